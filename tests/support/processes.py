"""Run ``paradoxplex`` sub-commands as processes, for end-to-end tests.

- ``start(*args, ready=PATTERN)``: start ``paradoxplex ARGS``, wait (bounded) for a stdout line
  matching ``PATTERN``; the match's groups tell the addresses it printed.
- ``Running.terminate()``: SIGTERM, wait, return the exit code; ``kill()``: SIGKILL.
- ``run(*args)``: run to completion (a CLI call), with a timeout.
- ``open_files_limited(soft, hard)``: a prefix (``wrap=``) that lowers the open-file limit.
stderr goes to a temporary file, shown by ``Running.log()`` when a test needs to say why.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0

NODE_LINE = re.compile(
    r"paradoxplex node (?P<id>\S+) listening on (?P<listen>\S+):(?P<port>\d+), "
    r"admin on (?P<admin>https?://\S+)"
)
ECHO_LINE = re.compile(r"upstream-echo listening on (?P<host>\S+):(?P<port>\d+)")


def executable() -> str:
    """The ``paradoxplex`` console script beside this interpreter, else the one on PATH."""
    beside = Path(sys.executable).parent / "paradoxplex"
    if beside.exists():
        return str(beside)
    found = shutil.which("paradoxplex")
    if found is None:
        raise RuntimeError("no paradoxplex executable: pip install -e . in this environment")
    return found


def environment(**extra: str) -> dict[str, str]:
    """The test's environment without PARADOXPLEX_* settings that would change a node."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARADOXPLEX_")}
    env.update(GRPC_VERBOSITY="ERROR", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


class Running:
    """A started ``paradoxplex`` process; ``lines`` collects its stdout."""

    def __init__(self, args: list[str], process: subprocess.Popen[str], log: IO[str]) -> None:
        self.args = args
        self.process = process
        self._log = log
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        stdout = self.process.stdout
        assert stdout is not None
        for line in stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for_line(self, pattern: re.Pattern[str], *, timeout: float) -> re.Match[str]:
        """The first stdout line matching ``pattern``; fails when it exits or time runs out."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{self.args} printed no {pattern.pattern!r}: {self.log()}")
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                self.process.wait()
                raise AssertionError(
                    f"{self.args} exited with {self.process.returncode}: {self.log()}"
                )
            self.lines.append(line)
            found = pattern.search(line)
            if found is not None:
                return found

    def terminate(self, *, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, then the exit code; a process still running after ``timeout`` is killed
        and the test fails."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.args} ignored SIGTERM for {timeout:g} s") from None

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()

    def close(self) -> None:
        """Kill if still running; release the pipe and the log."""
        self.kill()
        self._reader.join(timeout=STOP_TIMEOUT)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._log.close()

    def log(self) -> str:
        """stderr so far (the last 4000 characters)."""
        self._log.flush()
        self._log.seek(0)
        return self._log.read()[-4000:]

    def __enter__(self) -> Running:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Running pid={self.process.pid} rc={self.process.poll()} {self.args[:2]}>"


def open_files_limited(soft: int, hard: int) -> list[str]:
    """A command prefix that runs what follows with ``RLIMIT_NOFILE`` set to ``(soft, hard)``
    (an exec wrapper rather than ``preexec_fn``, which is unsafe in a process with threads)."""
    code = (
        "import os, resource, sys; "
        f"resource.setrlimit(resource.RLIMIT_NOFILE, ({soft}, {hard})); "
        "os.execv(sys.argv[1], sys.argv[1:])"
    )
    return [sys.executable, "-c", code]


def start(
    *args: str,
    ready: re.Pattern[str],
    timeout: float = START_TIMEOUT,
    env: Mapping[str, str] | None = None,
    wrap: Sequence[str] = (),
) -> tuple[Running, re.Match[str]]:
    """Start ``paradoxplex ARGS`` (``env``: extra environment; ``wrap``: a command prefix that
    execs it) and wait for its ``ready`` line."""
    command = [*wrap, executable(), *args]
    log = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115 - Running.close()
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=log,
        stdin=subprocess.DEVNULL,
        text=True,
        env=environment(**(env or {})),
    )
    running = Running(command, process, log)
    try:
        return running, running.wait_for_line(ready, timeout=timeout)
    except BaseException:
        running.close()
        raise


def run(
    *args: str, timeout: float = 30.0, wrap: Sequence[str] = (), **env: str
) -> subprocess.CompletedProcess[str]:
    """Run ``paradoxplex ARGS`` to completion (``wrap``: as for ``start``); stdout and stderr
    captured as text."""
    return subprocess.run(
        [*wrap, executable(), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment(**env),
        stdin=subprocess.DEVNULL,
        check=False,
    )
