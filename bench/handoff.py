"""The hot handoff under load: 10,000 idle sockets and 200 in a closed loop on one node, and
one handoff to a new process in the middle of the loop's measured window.

- One node (``--handoff-socket``) with one ``upstream-echo`` (the batch path). The idle
  sockets are a ``loadgen bcast`` of their own (a process here cannot hold more than 20,000
  files: the node holds its ~10,000, the clients theirs); the loop is ``loadgen rr -c 200``
  of 64-byte requests.
- ``baseline``: the loop for the same time, no handoff: its p99 and its slowest round trip.
- ``handoff``: the same, and ``paradoxplex node <same flags> --take-over`` started
  ``START_AT`` seconds into the window. Reported: the pause the new process measured (freeze
  to resume, ``last_handoff.pause_ms``), the loop's slowest round trip and p99 beside the
  baseline's (the difference is what the handoff added), the old process's exit code.
- Afterwards the new process broadcasts to every socket: the idle sockets that receive it are
  the sockets kept; the loop's sockets closed, replies that did not match their request and
  requests left unanswered are what was lost (all 0 when nothing is).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import orjson

from bench.measure import FD_SLACK, broadcast_trigger, wait_count
from bench.procs import BenchError, Proc, Procs, build, fd_count, read_event, send_line
from bench.report import Row
from bench.systems import NodeHandle, http_get, launch_node, start_upstream_echo, wait_http

LOOP = 200
#: Seconds into the loop's measured window when the new process is started.
START_AT = 1.0
#: The loop's measured window: the new process starts (1.5 to 4 s of Python imports on a busy
#: machine), connects its upstream link and takes over well within it.
WINDOW = 10.0
SIZE = 64


def _event(proc: Proc, name: str, timeout: float) -> dict[str, object]:
    event = read_event(proc, timeout)
    if event.get("event") != name:
        raise BenchError(f"{proc.name}: expected {name!r}, got {str(event)[:300]}")
    return event


def _number(event: dict[str, object], key: str) -> float:
    value = event.get(key)
    return float(value) if isinstance(value, int | float) else 0.0


def _loop(procs: Procs, name: str, target: str) -> Proc:
    argv = [str(build("loadgen")), "rr", "-a", target, "-c", str(LOOP), "-s", str(SIZE)]
    argv += ["-w", "1", "-d", str(WINDOW), "-t", "60"]
    return procs.start(f"loadgen-{name}", argv, pipes=True)


def _measured_loop(
    procs: Procs,
    name: str,
    target: str,
    during: Callable[[], None] | None = None,
    done: Callable[[], bool] | None = None,
) -> dict[str, object]:
    """The loop's result; ``during()`` is called as its window opens, and ``done()`` must be
    true when it closes (the handoff happened inside the window)."""
    loop = _loop(procs, name, target)
    try:
        _event(loop, "connected", 70)
        _event(loop, "start", 10)
        if during is not None:
            during()
        _event(loop, "end", WINDOW + 30)
        if done is not None and not done():
            raise BenchError(f"the handoff did not end within the {WINDOW:g} s window")
        return _event(loop, "result", 30)
    finally:
        loop.stop(2.0)


def _idle(procs: Procs, node: NodeHandle, sockets: int) -> Proc:
    """``sockets`` idle sockets that will be reached by a broadcast from ``node``'s admin."""
    trigger = procs.log_dir / "handoff-trigger.http"
    broadcast_trigger(trigger, node.admin[0], b"x" * SIZE)
    argv = [str(build("loadgen")), "bcast", "-a", node.listen, "-c", str(sockets)]
    argv += ["-k", str(SIZE), "-T", node.admin[0].removeprefix("http://"), "-F", str(trigger)]
    argv += ["-d", "60", "-t", "300"]
    return procs.start(f"loadgen-handoff-idle-{sockets}", argv, pipes=True)


def handoff_case(procs: Procs, sockets: int) -> list[Row]:
    """The case's rows (see the module's rules)."""
    path = procs.log_dir / "handoff.sock"
    _, address = start_upstream_echo(procs, "handoff-upstream")
    extra = ["--handoff-socket", str(path), "--log-level", "info"]
    node = launch_node(procs, "handoff-old", [address], extra=extra).wait_ready()
    pids = node.proc.tree()
    files = fd_count(pids)
    idle = _idle(procs, node, sockets)
    connected = int(_number(_event(idle, "connected", 310), "connected"))
    wait_count(lambda: fd_count(pids) - files, lambda n: n >= connected - FD_SLACK, timeout=60)
    baseline = _measured_loop(procs, "handoff-baseline", node.listen)
    new: list[Proc] = []

    def take_over() -> None:
        time.sleep(START_AT)  # into the measured window, as the issue asks
        argv = [*node.argv, "--take-over", str(path)]
        new.append(procs.start("handoff-new", argv, env=None))

    def took_over() -> bool:
        return bool(new) and "took over from" in new[0].log_text()

    during = _measured_loop(procs, "handoff-during", node.listen, take_over, took_over)
    if not new:
        raise BenchError("the new process did not start")
    code = node.proc.popen.wait(30)
    wait_http(f"{node.admin[0]}/readyz", new[0])
    record = _record(node.admin[0])
    send_line(idle)
    reached = _event(idle, "result", 90)
    idle.stop(2.0)
    rows = _rows(sockets, connected, baseline, during, reached, record, code)
    return rows + _steps(connected + LOOP, node.proc.log_text() + new[0].log_text())


#: The handoff's own account of its steps, from the two processes' INFO lines.
STEPS = {
    "freeze": re.compile(r"frozen in (\d+) ms"),
    "transfer": re.compile(r"sent in (\d+) ms"),
    "commit": re.compile(r"committed in (\d+) ms"),
    "adopt": re.compile(r"adopted in (\d+) ms"),
}


def _steps(total: int, logs: str) -> list[Row]:
    """Where the pause went: a row per step that the logs name."""
    rows = []
    for step, pattern in STEPS.items():
        found = pattern.search(logs)
        if found:
            row = Row("handoff", "node", total, metric=f"  of which {step}")
            row.value, row.unit = float(found.group(1)), "ms"
            print(f"  handoff   {row.metric:<26} {row.value:>10,.1f} {row.unit}")
            rows.append(row)
    return rows


def _record(admin: str) -> dict[str, object]:
    status, body = http_get(f"{admin}/v1/nodes", timeout=5)
    if status != 200:
        raise BenchError(f"GET /v1/nodes: {status}")
    items = orjson.loads(body)["items"]
    handoff = items[0].get("last_handoff") if items else None
    if not isinstance(handoff, dict):
        raise BenchError("the node record has no last_handoff: no handoff happened")
    return handoff


def _rows(
    sockets: int,
    connected: int,
    baseline: dict[str, object],
    during: dict[str, object],
    reached: dict[str, object],
    record: dict[str, object],
    code: int,
) -> list[Row]:
    total = connected + LOOP
    name = "node"
    lost = sum(int(_number(during, key)) for key in ("closed", "mismatches", "stalled"))
    kept = int(_number(reached, "received"))
    detail = {
        "baseline": baseline,
        "during": during,
        "broadcast": reached,
        "last_handoff": record,
        "old_exit_code": code,
    }
    rows = [
        Row("handoff", name, total, metric="pause", value=_number(record, "pause_ms"), unit="ms"),
        Row("handoff", name, total, metric="max latency", unit="ms"),
        Row("handoff", name, total, metric="max latency, no handoff", unit="ms"),
        Row("handoff", name, total, metric="p99 added", unit="ms"),
        Row("handoff", name, total, metric="sockets kept", value=kept + LOOP - _closed(during)),
        Row("handoff", name, total, metric="requests lost or twice", value=lost),
    ]
    rows[1].value = _number(during, "max_us") / 1000
    rows[2].value = _number(baseline, "max_us") / 1000
    rows[3].value = (_number(during, "p99_us") - _number(baseline, "p99_us")) / 1000
    rows[4].unit = f"of {total}"
    for row in rows:
        row.detail = detail
    problems = []
    if code != 0:
        problems.append(f"the old process exited {code}")
    if kept < connected:
        problems.append(f"{connected - kept} idle sockets missed the broadcast")
    if lost:
        problems.append(f"{lost} requests closed, mismatched or unanswered")
    if problems:
        rows[0].error = "; ".join(problems)
    for row in rows:
        print(f"  handoff   {row.metric:<26} {row.value or 0:>10,.1f} {row.unit}")
    return rows


def _closed(result: dict[str, object]) -> int:
    return int(_number(result, "closed"))
