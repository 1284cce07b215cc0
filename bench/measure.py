"""One measurement each: a closed-loop load run, idle sockets held, a broadcast timed.

The loadgen paces itself (warm-up, then a measured window, then it stops); CPU of the other
processes is read from /proc when it announces the window's start and end, so every CPU %
covers the same window as its msgs/s.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

from bench.procs import (
    BenchError,
    Proc,
    Procs,
    build,
    cpu_seconds,
    fd_count,
    machine_busy,
    read_event,
    rss_bytes,
    send_line,
)
from bench.profile import start_recording
from bench.report import Row
from bench.systems import System

CONNECT_LIMIT = 60.0  # seconds the loadgen may spend connecting
FD_SLACK = 16  # a node's own files come and go (gRPC, Redis connections)


@dataclass(frozen=True)
class Timing:
    duration: float = 5.0
    warmup: float = 1.0


def _targets(system: System) -> list[str]:
    args: list[str] = []
    for target in system.targets:
        args += ["-a", target]
    return args


def _pids(procs: Sequence[Proc]) -> list[int]:
    return [pid for proc in procs for pid in proc.tree()]


def _event(loadgen: Proc, name: str, timeout: float) -> dict[str, object]:
    event = read_event(loadgen, timeout)
    if event.get("event") == "result" and name != "result":
        raise BenchError(f"loadgen: {event.get('error', 'ended early')}")
    if event.get("event") != name:
        raise BenchError(f"loadgen: expected {name!r}, got {event}")
    return event


def _float(event: dict[str, object], key: str) -> float | None:
    value = event.get(key)
    if isinstance(value, int | float) and value >= 0:
        return float(value)
    return None


def _int(event: dict[str, object], key: str) -> int:
    value = event.get(key)
    return int(value) if isinstance(value, int | float) else 0


def settle(system: System, baseline: int, *, timeout: float = 15.0) -> None:
    """Wait until the proxies' open files are back near ``baseline`` (sockets of the last
    run closed); the next run starts on a quiet system."""
    deadline = time.monotonic() + timeout
    pids = _pids(system.proxy or system.upstream)
    while fd_count(pids) > baseline + 4 and time.monotonic() < deadline:
        time.sleep(0.1)


def open_files(system: System) -> int:
    return fd_count(_pids(system.proxy or system.upstream))


def load_run(
    procs: Procs,
    case: str,
    system: System,
    conns: int,
    timing: Timing,
    *,
    profile_dir: Path | None = None,
    window: Callable[[], None] | None = None,
) -> Row:
    """``conns`` closed-loop connections of 64-byte requests against ``system``; with
    ``profile_dir``, py-spy samples the node(s) during the measured window; ``window`` is
    called as it starts and as it ends (to read counters of other processes over it)."""
    loadgen_path = build("loadgen")
    warmup = timing.warmup + (1.0 if conns >= 1000 else 0.0)
    argv = [
        str(loadgen_path),
        "rr",
        *_targets(system),
        "-c",
        str(conns),
        "-s",
        "64",
        "-w",
        str(warmup),
        "-d",
        str(timing.duration),
        "-t",
        str(CONNECT_LIMIT),
        "-D",
        str(system.pause),
    ]
    proxy_pids, upstream_pids = _pids(system.proxy), _pids(system.upstream)
    loadgen = procs.start(f"loadgen-{case}-{system.name}-{conns}", argv, pipes=True)
    try:
        connected = _event(loadgen, "connected", CONNECT_LIMIT + 10)
        _event(loadgen, "start", system.pause + warmup + 10)
        spies = _profile(procs, profile_dir, f"{case}-{system.name}-{conns}", system, timing)
        start, busy0 = time.monotonic(), machine_busy()
        proxy0, upstream0 = cpu_seconds(proxy_pids), cpu_seconds(upstream_pids)
        if window:
            window()
        _event(loadgen, "end", timing.duration + 10)
        wall, busy1 = time.monotonic() - start, machine_busy()
        proxy1, upstream1 = cpu_seconds(proxy_pids), cpu_seconds(upstream_pids)
        if window:
            window()
        result = _event(loadgen, "result", 30)
        for spy in spies:
            spy.popen.wait(15)
    finally:
        loadgen.stop(2.0)
    row = Row(
        case,
        system.name,
        conns,
        msgs_per_s=_float(result, "msgs_per_s"),
        p50_us=_float(result, "p50_us"),
        p99_us=_float(result, "p99_us"),
        p999_us=_float(result, "p999_us"),
        cpu_proxy=100 * (proxy1 - proxy0) / wall if proxy_pids else None,
        cpu_upstream=100 * (upstream1 - upstream0) / wall if upstream_pids else None,
        cpu_loadgen=_float(result, "cpu_pct"),
    )
    row.detail = {
        key: result.get(key)
        for key in ("msgs", "seconds", "mean_us", "max_us", "mismatches", "closed", "stalled")
    }
    row.detail["oldest_ms"] = result.get("oldest_ms")
    ours = (proxy1 - proxy0) + (upstream1 - upstream0) + (_float(result, "cpu_s") or 0.0)
    row.detail["cpu_other"] = round(100 * ((busy1 - busy0) - ours) / wall, 1)
    row.detail["connect_failed"] = _int(connected, "failed")
    row.detail["connect_s"] = connected.get("seconds")
    if not result.get("msgs"):
        row.error = f"no round trip completed ({_summary(result, connected)})"
    if system.note:
        row.detail["note"] = system.note
    return row


def _profile(
    procs: Procs, profile_dir: Path | None, name: str, system: System, timing: Timing
) -> list[Proc]:
    """py-spy on each Python proxy (the node, not HAProxy) for the measured window."""
    if profile_dir is None or system.name == "haproxy":
        return []
    return [
        start_recording(
            procs, f"py-spy-{name}-{i}", proxy, profile_dir / f"{name}-{i}.txt", timing.duration
        )
        for i, proxy in enumerate(system.proxy)
    ]


def _summary(result: dict[str, object], connected: dict[str, object]) -> str:
    keys = ("open", "closed", "stalled", "mismatches")
    parts = [f"connected={connected.get('connected')}"] + [f"{k}={result.get(k)}" for k in keys]
    return " ".join(parts)


def wait_count(
    read: Callable[[], int], done: Callable[[int], bool], *, timeout: float, still: float = 3.0
) -> tuple[bool, int]:
    """Poll ``read()`` until ``done(value)``, or until it has not changed for ``still``
    seconds, or ``timeout``; returns (done, last value)."""
    deadline = time.monotonic() + timeout
    value, since = read(), time.monotonic()
    while not done(value):
        now = time.monotonic()
        if now > deadline or now - since > still:
            return False, value
        time.sleep(0.2)
        latest = read()
        if latest != value:
            value, since = latest, time.monotonic()
    return True, value


def stable_rss(pids: Sequence[int], *, settle_s: float = 1.0, timeout: float = 10.0) -> int:
    """VmRSS once it stops growing for ``settle_s`` (or at ``timeout``)."""
    deadline = time.monotonic() + timeout
    last, since = rss_bytes(pids), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = rss_bytes(pids)
        if now > last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= settle_s:
            break
    return last


@dataclass
class Held:
    """Idle sockets held open by a loadgen until ``release``."""

    loadgen: Proc
    connected: int
    failed: int

    def release(self) -> dict[str, object]:
        try:
            send_line(self.loadgen)
            return _event(self.loadgen, "result", 30)
        finally:
            self.loadgen.stop(2.0)


def hold_idle(procs: Procs, name: str, targets: Sequence[str], sockets: int) -> Held:
    """Connect ``sockets`` idle sockets (round robin over ``targets``) and keep them."""
    argv = [str(build("loadgen")), "idle", "-c", str(sockets), "-t", "300"]
    for target in targets:
        argv += ["-a", target]
    loadgen = procs.start(f"loadgen-{name}-idle-{sockets}", argv, pipes=True)
    try:
        connected = _event(loadgen, "connected", 310)
    except BaseException:
        loadgen.stop(1.0)
        raise
    return Held(loadgen, _int(connected, "connected"), _int(connected, "failed"))


def idle_rss(
    procs: Procs, case: str, system: System, sockets: int, *, fds_per_socket: int = 1
) -> Row:
    """RSS growth of ``system.proxy`` per idle socket held open."""
    pids = _pids(system.proxy or system.upstream)
    before = stable_rss(pids, settle_s=0.5, timeout=3)
    files = fd_count(pids)
    held = hold_idle(procs, f"{case}-{system.name}", system.targets, sockets)
    try:
        expected = files + held.connected * fds_per_socket - FD_SLACK
        accepted, _ = wait_count(lambda: fd_count(pids), lambda n: n >= expected, timeout=60)
        after = stable_rss(pids)
        got = fd_count(pids) - files
    finally:
        result = held.release()
    row = Row(case, system.name, held.connected, metric="RSS per idle socket", unit="bytes")
    row.value = (after - before) / max(held.connected, 1)
    row.detail = {
        "rss_before": before,
        "rss_after": after,
        "open_files_added": got,
        "connect_failed": held.failed,
        "closed_by_peer": result.get("closed"),
    }
    if not accepted:
        row.detail["note"] = f"only {got} of {held.connected * fds_per_socket} files opened"
    if held.connected == 0:
        row.error = "no socket connected"
    return row


def broadcast_trigger(path: Path, admin: str, payload: bytes) -> Path:
    """An HTTP request file: ``POST /v1/broadcast`` of ``payload`` to the admin at ``admin``."""
    body = orjson.dumps({"target": "all", "text": payload.decode()})
    host = admin.removeprefix("http://")
    head = (
        f"POST /v1/broadcast HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    path.write_bytes(head.encode() + body)
    return path


def broadcast(
    procs: Procs,
    case: str,
    system: System,
    sockets: int,
    *,
    known: Callable[[], int],
    size: int = 64,
    wait: float = 30.0,
) -> list[Row]:
    """Time a broadcast from ``system.admin[0]`` to ``sockets`` sockets over the targets,
    once ``known()`` (sockets the system has taken in) is about all of them, or stalls."""
    payload = (b"broadcast-" * (size // 10 + 1))[:size]
    trigger = broadcast_trigger(
        procs.log_dir / f"{system.name}-trigger.http", system.admin[0], payload
    )
    argv = [
        str(build("loadgen")),
        "bcast",
        *_targets(system),
        "-c",
        str(sockets),
        "-k",
        str(size),
        "-T",
        system.admin[0].removeprefix("http://"),
        "-F",
        str(trigger),
        "-d",
        str(wait),
        "-t",
        "120",
    ]
    loadgen = procs.start(f"loadgen-{case}-{system.name}-bcast", argv, pipes=True)
    try:
        connected = _event(loadgen, "connected", 130)
        count = _int(connected, "connected")
        registered, _ = wait_count(known, lambda n: n >= count - FD_SLACK, timeout=60)
        time.sleep(0.5)
        send_line(loadgen)
        result = _event(loadgen, "result", wait + 30)
    finally:
        loadgen.stop(2.0)
    received = _int(result, "received")
    detail: dict[str, object] = dict(result)
    detail["connect_failed"] = _int(connected, "failed")
    if not registered:
        detail["note"] = "not every session was registered before the trigger"
    rows = []
    for metric, key in (
        ("first arrival", "first_us"),
        ("median arrival", "p50_us"),
        ("last arrival", "last_us"),
    ):
        row = Row(case, system.name, count, metric=metric, unit="ms", detail=detail)
        value = _float(result, key)
        row.value = value / 1000 if value is not None else None
        rows.append(row)
    rows.append(
        Row(
            case,
            system.name,
            count,
            metric="sockets reached",
            value=received,
            unit="sockets",
            detail=detail,
        )
    )
    if received < count:
        status = result.get("trigger_status")
        note = f"{received} of {count} sockets got the broadcast (HTTP {status})"
        for row in rows[:3]:
            row.error = note
    return rows
