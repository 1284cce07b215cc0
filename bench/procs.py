"""Processes for the benchmarks: start, watch, measure through /proc, and always stop.

Rules:
- Every child starts in its own session (process group), with its output in a log file under
  the run's log directory; ``Procs`` stops every group it started (SIGTERM, then SIGKILL
  after ``grace`` seconds) when its ``with`` block ends, error or not.
- Measurements read /proc only: CPU seconds are utime + stime of a process and its
  descendants, RSS is VmRSS, open sockets are the entries of /proc/<pid>/fd.
- Ports are picked free on 127.0.0.1 (bind to port 0, read it, close).
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import resource
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import orjson

BENCH = Path(__file__).resolve().parent
BUILD = BENCH / "build"
TICK = float(os.sysconf("SC_CLK_TCK"))
LOG_TAIL = 2000  # bytes of a log shown in an error


class BenchError(Exception):
    """A case cannot go on; the message says why (shown as ``n/a (error ...)``)."""


def _bindable(port: int) -> int:
    """Bind ``port`` (0: any) on 127.0.0.1 and return it, with SO_REUSEADDR as the servers
    use it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        bound: int = sock.getsockname()[1]
        return bound


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_ports(count: int = 1) -> int:
    """The first of ``count`` consecutive free ports, taken below the ephemeral range: the
    loadgen's connections (tens of thousands, then TIME_WAIT for a minute) use that range,
    and Linux gives ``connect()`` the ports of one parity and ``bind(0)`` the other, so P+1
    after a ``bind(0)`` is often held."""
    low = _ephemeral_low()
    if low - count > 10_000:
        for _ in range(200):
            port = random.randrange(10_000, low - count)
            try:
                for offset in range(count):
                    _bindable(port + offset)
            except OSError:
                continue
            return port
    if count == 1:
        return _bindable(0)
    raise BenchError(f"no {count} consecutive free ports")


def free_port() -> int:
    return free_ports(1)


def free_port_pair() -> int:
    """A free port P such that P + 1 is free too (``--workers 2`` admin ports)."""
    return free_ports(2)


def raise_nofile() -> int:
    """Raise this process's (and so its children's) open-file limit to the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return wanted


# /proc readers ----------------------------------------------------------------------------


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, ()))
    return found


def cpu_seconds(pids: Sequence[int]) -> float:
    """utime + stime of ``pids`` (processes that are gone count 0)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / TICK


def machine_busy() -> float:
    """CPU seconds all CPUs spent not idle since boot (/proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields) - idle) / TICK


def rss_bytes(pids: Sequence[int]) -> int:
    total = 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
        total += int(match.group(1)) * 1024 if match else 0
    return total


def fd_count(pids: Sequence[int]) -> int:
    total = 0
    for pid in pids:
        try:
            total += len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            continue
    return total


# processes --------------------------------------------------------------------------------


class Proc:
    """One started child: its process group, its log, and /proc views of its tree."""

    def __init__(self, name: str, popen: subprocess.Popen[bytes], log: Path) -> None:
        self.name = name
        self.popen = popen
        self.log = log
        self.stopped = False

    @property
    def pid(self) -> int:
        return self.popen.pid

    def tree(self) -> list[int]:
        return descendants(self.pid) if self.alive() else []

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, size: int = LOG_TAIL) -> str:
        return self.log_text()[-size:]

    def wait_log(self, pattern: str, timeout: float) -> re.Match[str]:
        """Wait until the log matches ``pattern``; BenchError if the child dies or time is up."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while True:
            match = regex.search(self.log_text())
            if match:
                return match
            if not self.alive():
                raise BenchError(
                    f"{self.name} exited ({self.popen.returncode}): {self.last_line()}"
                )
            if time.monotonic() > deadline:
                raise BenchError(f"{self.name}: no {pattern!r} within {timeout:.0f}s")
            time.sleep(0.05)

    def last_line(self) -> str:
        lines = [line for line in self.log_text().splitlines() if line.strip()]
        return lines[-1][-300:] if lines else "(no output)"

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM the child (it passes it on to its workers), SIGKILL its whole group after
        ``grace`` seconds; reap it. Once only."""
        if self.stopped:
            return
        self.stopped = True
        if self.popen.poll() is None:
            self.popen.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(grace)
        # the group may hold children (workers) that outlive the leader
        _signal_group(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(2.0)
        if self.popen.stdin is not None:
            self.popen.stdin.close()
        if self.popen.stdout is not None:
            self.popen.stdout.close()

    def __repr__(self) -> str:
        state = "running" if self.alive() else f"exited {self.popen.returncode}"
        return f"<Proc {self.name} pid={self.pid} {state}>"


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


class Procs:
    """The children of one case; every one is stopped when the ``with`` block ends."""

    def __init__(self, log_dir: Path, *, grace: float = 5.0) -> None:
        self.log_dir = log_dir
        self.grace = grace
        self.started: list[Proc] = []

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        pipes: bool = False,
    ) -> Proc:
        """Start ``argv``; output goes to ``<log_dir>/<name>.log`` (stdout is a pipe with
        ``pipes``, and stdin too)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"{name}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                list(argv),
                stdin=subprocess.PIPE if pipes else subprocess.DEVNULL,
                stdout=subprocess.PIPE if pipes else out,
                stderr=out,
                env=env,
                start_new_session=True,
            )
        proc = Proc(name, popen, log)
        self.started.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.started):
            proc.stop(self.grace)
        self.started.clear()

    def __enter__(self) -> Procs:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop_all()

    def __repr__(self) -> str:
        return f"<Procs {len(self.started)} started, logs in {self.log_dir}>"


def read_event(proc: Proc, timeout: float) -> dict[str, object]:
    """The next JSON line of a piped child's stdout (the loadgen's events)."""
    stdout = proc.popen.stdout
    if stdout is None:
        raise BenchError(f"{proc.name} has no stdout pipe")
    ready, _, _ = select.select([stdout], [], [], timeout)
    if not ready:
        raise BenchError(f"{proc.name}: no output within {timeout:.0f}s")
    line = stdout.readline()
    if not line:
        proc.popen.wait(5)
        raise BenchError(f"{proc.name} exited ({proc.popen.returncode}): {proc.last_line()}")
    event = orjson.loads(line)
    if not isinstance(event, dict):
        raise BenchError(f"{proc.name}: unexpected output {line[:200]!r}")
    return event


def send_line(proc: Proc, text: str = "go") -> None:
    stdin = proc.popen.stdin
    if stdin is None:
        raise BenchError(f"{proc.name} has no stdin pipe")
    stdin.write(text.encode() + b"\n")
    stdin.flush()


# the C programs ---------------------------------------------------------------------------


def build(name: str) -> Path:
    """Compile ``bench/<name>.c`` into ``bench/build/<name>`` when missing or out of date."""
    source = BENCH / f"{name}.c"
    binary = BUILD / name
    if binary.exists() and binary.stat().st_mtime >= source.stat().st_mtime:
        return binary
    BUILD.mkdir(exist_ok=True)
    command = ["gcc", "-O2", "-Wall", "-o", str(binary), str(source)]
    print(f"building {binary.relative_to(BENCH.parent)}: {' '.join(command)}", file=sys.stderr)
    try:
        subprocess.run(command, check=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as error:
        raise BenchError(f"cannot build {name}: {error}") from error
    return binary
