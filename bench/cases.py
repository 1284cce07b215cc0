"""The benchmark cases. Each returns rows and never raises for a failure of the system
under test: a case (or one run) that fails becomes a row with ``error`` set.

- ``rr``: 64-byte request/response at each connection level, alternating node (batch path),
  HAProxy (if installed) and the C echo server, all started once and kept running.
- ``original``: the same against a node whose upstream serves only the original RPCs;
  alternated with ``rr`` when both run.
- ``idle``: RSS growth per idle socket (node, HAProxy, C echo).
- ``redis-mem``: Redis ``used_memory`` growth per session (one node with ``--redis``), and
  the sessions Redis still holds a while after the sockets closed.
- ``broadcast``: one admin broadcast to every socket, one node vs two nodes over Redis.
- ``workers``: ``--workers 2`` vs ``--workers 1`` (both with ``--redis``).
- ``cross``: replies that must cross nodes through Redis vs the same traffic answered locally.
- ``fleet``: ``cross`` at 64 connections over one Redis, 3 shards and a 3-master Cluster, with
  each server's Redis CPU and commands, and Redis bytes per session in each layout.
- ``flood``: fresh clients' round trips while one socket sends 4 MiB of newlines, vs quiet.
- ``storm``: a reconnect storm on a 2-node fleet, and through HAProxy (``bench/storm.py``).
- ``handoff``: 10,000 idle sockets and 200 in a closed loop, one hot handoff to a new process
  (``bench/handoff.py``): the pause, the latency it added, sockets kept, requests lost.
- ``acks``: ``rr`` at 64 connections with acknowledged delivery (``node-acks``, as shipped)
  and without (``node-noacks``: ``upstream-echo --no-acks``, so the node sends unnumbered
  messages and keeps nothing), alternating, ``ACK_ROUNDS`` rounds; the median of each, the
  ratio of msgs/s (within each round, then the median) and the CPU per message of node and
  upstream together.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench import flood
from bench.handoff import handoff_case
from bench.layouts import MODES as LAYOUTS
from bench.layouts import Layout, Spent, start_layout
from bench.measure import (
    Timing,
    broadcast,
    hold_idle,
    idle_rss,
    load_run,
    open_files,
    settle,
    stable_rss,
    wait_count,
)
from bench.procs import BenchError, Procs, fd_count
from bench.report import Row
from bench.storm import Storm, fleet_storm, haproxy_storm, storm_rows
from bench.systems import (
    HAPROXY_INSTALL,
    RedisServer,
    System,
    echo_system,
    haproxy_binary,
    haproxy_system,
    launch_node,
    node_system,
    start_cross_upstream,
    start_redis,
    start_upstream_echo,
    wait_round_trip,
)
from paradoxplex.shared.keys import Keys

SYNC_PAUSE = 0.5
ALL_CASES = (
    "rr", "original", "idle", "redis-mem", "broadcast", "workers", "cross", "fleet", "flood",
    "storm", "acks", "handoff",
)  # fmt: skip
START_TIMEOUT = 30.0


@dataclass(frozen=True)
class Plan:
    timing: Timing
    levels: tuple[int, ...]
    idle_sockets: int
    fleet_levels: tuple[int, ...]
    worker_levels: tuple[int, ...]
    log_dir: Path
    nofile: int
    warnings: list[str]
    profile_dir: Path | None = None
    storm_sockets: int = 10_000
    storm_rate: float = 10_000.0  # connects per second
    baseline: Path | None = None  # ``rr`` also runs a node of this code (``node-base``)

    @property
    def haproxy_maxconn(self) -> int:
        """HAProxy needs two files per session; stay inside the open-file limit."""
        return max(100, min(20_000, (self.nofile - 200) // 2))


Factory = Callable[[Procs], System]


def _error(error: BaseException) -> str:
    if isinstance(error, BenchError):
        return f"error: {error}"
    where = traceback.extract_tb(error.__traceback__)[-1:]
    place = f" at {where[0].filename.rpartition('/')[2]}:{where[0].lineno}" if where else ""
    return f"error: {type(error).__name__}: {error}{place}"


@contextmanager
def _case(log_dir: Path, name: str) -> Iterator[Procs]:
    with Procs(log_dir / name) as procs:
        yield procs


def _start_all(
    procs: Procs, specs: list[tuple[str, str, Factory]], levels: tuple[int, ...]
) -> tuple[list[tuple[str, System, int]], list[Row]]:
    started: list[tuple[str, System, int]] = []
    failed: list[Row] = []
    for case, name, factory in specs:
        try:
            system = factory(procs)
        except Exception as error:
            failed += [Row(case, name, conns, error=_error(error)) for conns in levels]
            continue
        started.append((case, system, open_files(system)))
    return started, failed


def _alternate(
    procs: Procs, started: list[tuple[str, System, int]], levels: tuple[int, ...], plan: Plan
) -> list[Row]:
    """Each connection level, each system in turn: drift hits every system alike."""
    rows = []
    for conns in levels:
        for case, system, files in started:
            settle(system, files)
            print(f"  {case:<9} {system.name:<14} {conns:>5} conns ...", end="", flush=True)
            try:
                _check_alive(system)
                row = load_run(
                    procs, case, system, conns, plan.timing, profile_dir=plan.profile_dir
                )
            except Exception as error:
                row = Row(case, system.name, conns, error=_error(error))
            print(f" {row.msgs_per_s or 0:>10,.0f} msgs/s" if not row.error else f" {row.error}")
            rows.append(row)
    return rows


def _check_alive(system: System) -> None:
    """A process of the system that is gone (crashed, or killed from outside) fails the run
    with its exit status and last log line, rather than as a loadgen error."""
    for proc in [*system.proxy, *system.upstream]:
        if not proc.alive():
            code = proc.popen.returncode
            how = f"killed by signal {-code}" if code < 0 else f"exit {code}"
            raise BenchError(f"{proc.name} is gone ({how}): {proc.last_line()}")


def throughput(plan: Plan, cases: set[str]) -> list[Row]:
    """``rr`` and ``original``: every system started once, runs alternating between them."""
    specs: list[tuple[str, str, Factory]] = []
    if "rr" in cases:
        specs.append(("rr", "node", lambda p: node_system(p, "node")))
        if haproxy_binary():
            specs.append(
                ("rr", "haproxy", lambda p: haproxy_system(p, maxconn=plan.haproxy_maxconn))
            )
        else:
            plan.warnings.append(f"haproxy not on PATH: no HAProxy column ({HAPROXY_INSTALL})")
        specs.append(("rr", "c-echo", echo_system))
        if plan.baseline is not None:
            base = plan.baseline
            specs.append(("rr", "node-base", lambda p: node_system(p, "node-base", code=base)))
    if "original" in cases:
        specs.append(
            ("original", "node-original", lambda p: node_system(p, "node-original", original=True))
        )
    with _case(plan.log_dir, "throughput") as procs:
        started, rows = _start_all(procs, specs, plan.levels)
        return rows + _alternate(procs, started, plan.levels, plan)


def idle(plan: Plan) -> list[Row]:
    rows = []
    specs: list[tuple[str, Factory, int, int]] = [
        ("node", lambda p: node_system(p, "node"), plan.idle_sockets, 1),
    ]
    if haproxy_binary():
        sockets = min(plan.idle_sockets, plan.haproxy_maxconn - 50)
        specs.append(
            ("haproxy", lambda p: haproxy_system(p, maxconn=plan.haproxy_maxconn), sockets, 2)
        )
    specs.append(("c-echo", echo_system, plan.idle_sockets, 1))
    for name, factory, sockets, files in specs:
        print(f"  idle      {name:<14} {sockets:>5} sockets ...", end="", flush=True)
        with _case(plan.log_dir, f"idle-{name}") as procs:
            try:
                row = idle_rss(procs, "idle", factory(procs), sockets, fds_per_socket=files)
            except Exception as error:
                row = Row("idle", name, sockets, metric="RSS per idle socket", error=_error(error))
        print(f" {row.value or 0:,.0f} bytes/socket" if not row.error else f" {row.error}")
        rows.append(row)
    return rows


def _warning(log: str) -> str:
    """The node's first WARNING or ERROR line, without its timestamp."""
    for line in log.splitlines():
        for level in ("WARNING", "ERROR"):
            if f" {level} " in line:
                return line.partition(f" {level} ")[2][:200]
    return "nothing in the node's log"


def _sessions(redis: RedisServer, prefix: str) -> int:
    """Sessions Redis holds (the hash of session records: ``Keys.sessions_data``)."""
    return int(redis.client.hlen(Keys(prefix).sessions_data(0)))


def redis_memory(plan: Plan) -> list[Row]:
    """Redis bytes per session with ``idle_sockets`` sockets on one fleet node."""
    sockets, prefix, name = plan.idle_sockets, "benchmem", "node+redis"
    print(f"  redis-mem {name:<14} {sockets:>5} sockets ...", end="", flush=True)
    rows: list[Row] = []
    with _case(plan.log_dir, "redis-mem") as procs:
        try:
            redis = start_redis(procs)
            node = launch_node(procs, name, [], redis_url=redis.url, key_prefix=prefix)
            node.wait_ready()
            pids = node.proc.tree()
            time.sleep(1.0)
            used0, rss0 = redis.used_memory(), stable_rss(pids, settle_s=0.5, timeout=3)
            held = hold_idle(procs, "redis-mem", [node.listen], sockets)
            try:
                _, count = wait_count(
                    lambda: _sessions(redis, prefix), lambda n: n >= held.connected, timeout=60
                )
                used1, rss1 = redis.used_memory(), stable_rss(pids)
            finally:
                held.release()
            gone, left = wait_count(lambda: _sessions(redis, prefix), lambda n: n == 0, timeout=15)
        except Exception as error:
            print(f" {_error(error)}")
            return [
                Row("redis-mem", name, sockets, metric="Redis per session", error=_error(error))
            ]
    detail: dict[str, object] = {
        "used_memory_before": used0,
        "used_memory_after": used1,
        "sessions": count,
    }
    per_session = Row("redis-mem", name, count, metric="Redis per session", unit="bytes")
    per_session.value = (used1 - used0) / max(count, 1)
    per_session.detail = detail
    if count < held.connected * 0.95:
        per_session.error = (
            f"only {count} of {held.connected} sessions reached Redis "
            f"({_warning(node.proc.log_text())}); {per_session.value:,.0f} bytes each"
        )
    rss = Row("redis-mem", name, held.connected, metric="node RSS per idle socket", unit="bytes")
    rss.value = (rss1 - rss0) / max(held.connected, 1)
    leftover = Row("redis-mem", name, held.connected, metric="sessions left after close")
    leftover.value, leftover.unit = left, "sessions"
    if not gone:
        leftover.detail["note"] = "Redis still lists sessions of closed sockets"
    rows += [per_session, rss, leftover]
    print(f" {per_session.value:,.0f} bytes/session, {left} left after close")
    return rows


def broadcasts(plan: Plan) -> list[Row]:
    """One node (in-memory fleet) vs two nodes through Redis, ``idle_sockets`` sockets."""
    rows: list[Row] = []
    sockets = plan.idle_sockets
    for name in ("node", "fleet-2-nodes"):
        print(f"  broadcast {name:<14} {sockets:>5} sockets ...", end="", flush=True)
        with _case(plan.log_dir, f"broadcast-{name}") as procs:
            try:
                rows += _broadcast(procs, name, sockets)
                last = rows[-2]
                print(
                    f" last arrival {last.value or 0:,.1f} ms"
                    if not last.error
                    else f" {last.error}"
                )
            except Exception as error:
                print(f" {_error(error)}")
                rows.append(
                    Row("broadcast", name, sockets, metric="last arrival", error=_error(error))
                )
    return rows


def _broadcast(procs: Procs, name: str, sockets: int) -> list[Row]:
    prefix = "benchcast"
    if name == "node":
        node = launch_node(procs, name, []).wait_ready()
        system = System(name, [node.listen], [node.proc], [], node.admin)
        pids = node.proc.tree()
        files = fd_count(pids)
        return broadcast(procs, "broadcast", system, sockets, known=lambda: fd_count(pids) - files)
    redis = start_redis(procs)
    launched = [
        launch_node(
            procs,
            f"{name}-{tag}",
            [],
            redis_url=redis.url,
            node_id=f"bench-{tag}",
            key_prefix=prefix,
        )
        for tag in ("a", "b")
    ]
    nodes = [node.wait_ready() for node in launched]
    system = System(
        name, [n.listen for n in nodes], [n.proc for n in nodes], [], [nodes[0].admin[0]]
    )
    pids = [pid for n in nodes for pid in n.proc.tree()]
    files = fd_count(pids)

    def known() -> int:
        """Sockets both accepted and written to the fleet's session list."""
        return min(fd_count(pids) - files, _sessions(redis, prefix))

    return broadcast(procs, "broadcast", system, sockets, known=known)


def workers(plan: Plan) -> list[Row]:
    """``--workers 2`` vs ``--workers 1``, both fleet members of one Redis, one echo upstream."""
    with _case(plan.log_dir, "workers") as procs:
        try:
            redis = start_redis(procs)
            upstream, address = start_upstream_echo(procs, "workers-upstream")
        except Exception as error:
            return [
                Row("workers", "workers-1/2", c, error=_error(error)) for c in plan.worker_levels
            ]

        def factory(count: int) -> Factory:
            def start(p: Procs) -> System:
                name = f"workers-{count}"
                node = launch_node(
                    p, name, [address], redis_url=redis.url, workers=count, key_prefix=name
                ).wait_ready()
                system = System(name, [node.listen], [node.proc], [upstream], node.admin)
                wait_round_trip(system, [node.proc, upstream], timeout=START_TIMEOUT, tries=8)
                return system

            return start

        specs = [("workers", f"workers-{n}", factory(n)) for n in (1, 2)]
        started, rows = _start_all(procs, specs, plan.worker_levels)
        return rows + _alternate(procs, started, plan.worker_levels, plan)


def cross_pair(procs: Procs, name: str, redis_url: str, *, mode: str) -> System:
    """Nodes A and B on ``redis_url`` and a cross upstream answering in ``mode`` (``cross``:
    on B's stream, so every reply to A's sockets goes through Redis; ``local``)."""
    upstream, address = start_cross_upstream(procs, f"{name}-upstream", mode=mode)
    launched = [
        launch_node(
            procs,
            f"{name}-{tag}",
            [address],
            redis_url=redis_url,
            node_id=f"{name}-{tag}",
            key_prefix=name,
        )
        for tag in ("a", "b")
    ]
    nodes = [node.wait_ready() for node in launched]
    # The loadgen talks to A only; B holds no socket, it only relays replies.
    # A writes new sessions to Redis in the background: the first request
    # waits SYNC_PAUSE so that B can find the socket's owner.
    system = System(
        name,
        [nodes[0].listen],
        [n.proc for n in nodes],
        [upstream],
        [n.admin[0] for n in nodes],
        note=f"first request {SYNC_PAUSE:g} s after connect",
        pause=SYNC_PAUSE,
    )
    wait_round_trip(system, [*system.proxy, upstream], timeout=START_TIMEOUT, tries=4, pause=0.5)
    return system


def cross(plan: Plan) -> list[Row]:
    """Node A's sockets answered on node B's upstream stream (a Redis hop) vs locally."""
    with _case(plan.log_dir, "cross") as procs:
        try:
            redis = start_redis(procs)
        except Exception as error:
            return [Row("cross", "fleet-cross", c, error=_error(error)) for c in plan.fleet_levels]

        def factory(mode: str) -> Factory:
            return lambda p: cross_pair(p, f"fleet-{mode}", redis.url, mode=mode)

        specs = [("cross", f"fleet-{mode}", factory(mode)) for mode in ("local", "cross")]
        started, rows = _start_all(procs, specs, plan.fleet_levels)
        rows += _alternate(procs, started, plan.fleet_levels, plan)
        # the same, but the first request right after connecting: are new sockets answered?
        fresh = [
            (case, dataclasses.replace(system, name="fleet-cross-now", note="", pause=0.0), files)
            for case, system, files in started
            if system.name == "fleet-cross"
        ]
        return rows + _alternate(procs, fresh, plan.fleet_levels[-1:], plan)


FLEET_CONNS = 64


def fleet(plan: Plan) -> list[Row]:
    """Cross-node msgs/s at ``FLEET_CONNS`` connections over each Redis layout (one Redis, 3
    shards, a 3-master Cluster: ``bench/layouts.py``), all started once and run in turn; each
    server's Redis CPU and commands during the run; then Redis bytes per session."""
    rows: list[Row] = []
    with _case(plan.log_dir, "fleet") as procs:
        started: list[tuple[Layout, System, int]] = []
        for mode in LAYOUTS:
            name = f"redis-{mode}"
            try:
                layout = start_layout(procs, mode)
                system = cross_pair(procs, name, layout.url, mode="cross")
            except Exception as error:
                rows.append(Row("fleet", name, FLEET_CONNS, error=_error(error)))
                continue
            started.append((layout, system, open_files(system)))
        for layout, system, files in started:
            rows += _fleet_load(procs, plan, layout, system, files)
        for layout, system, _ in started:
            rows.append(_fleet_memory(procs, plan, layout, system))
    return rows + _fleet_ratios(rows)


def _fleet_load(procs: Procs, plan: Plan, layout: Layout, system: System, files: int) -> list[Row]:
    settle(system, files)
    print(f"  fleet     {system.name:<14} {FLEET_CONNS:>5} conns ...", end="", flush=True)
    try:
        _check_alive(system)
        readings: list[tuple[float, list[Spent]]] = []

        def read() -> None:
            readings.append((time.monotonic(), layout.counters()))

        row = load_run(procs, "fleet", system, FLEET_CONNS, plan.timing, window=read)
    except Exception as error:
        print(f" {_error(error)}")
        return [Row("fleet", system.name, FLEET_CONNS, error=_error(error))]
    if row.error:
        print(f" {row.error}")
        return [row]
    (began, before), (ended, after) = readings
    wall, rows = ended - began, [row]
    cpu = [100 * (b.cpu_s - a.cpu_s) / wall for a, b in zip(before, after, strict=True)]
    ops = [(b.commands - a.commands) / wall for a, b in zip(before, after, strict=True)]
    for i, (one_cpu, one_ops) in enumerate(zip(cpu, ops, strict=True)):
        server = f"redis{i + 1}"
        rows.append(_measure(system.name, FLEET_CONNS, f"{server} CPU", one_cpu, "% core"))
        rows.append(_measure(system.name, FLEET_CONNS, f"{server} commands/s", one_ops))
    per_msg = 1000 * sum(ops) / row.msgs_per_s if row.msgs_per_s else None
    rows.append(_measure(system.name, FLEET_CONNS, "Redis commands per 1k msgs", per_msg))
    row.detail |= {"redis_cpu_percent": cpu, "redis_commands_per_s": ops, "window_s": wall}
    shown = ", ".join(f"{c:.0f}% {o:,.0f}/s" for c, o in zip(cpu, ops, strict=True))
    print(f" {row.msgs_per_s or 0:>10,.0f} msgs/s; Redis CPU, commands: {shown}")
    return rows


def _fleet_memory(procs: Procs, plan: Plan, layout: Layout, system: System) -> Row:
    """Redis ``used_memory`` growth, summed over the layout's servers, per idle session."""
    sockets, prefix = plan.idle_sockets, system.name
    metric = "Redis per session"
    print(f"  fleet     {system.name:<14} {sockets:>5} sockets ...", end="", flush=True)
    try:
        wait_count(lambda: layout.sessions(prefix), lambda n: n == 0, timeout=15)
        used0 = layout.used_memory()
        held = hold_idle(procs, f"fleet-{layout.mode}", system.targets[:1], sockets)
        try:
            _, count = wait_count(
                lambda: layout.sessions(prefix), lambda n: n >= held.connected, timeout=60
            )
            used1 = layout.used_memory()
        finally:
            held.release()
    except Exception as error:
        print(f" {_error(error)}")
        return Row("fleet", system.name, sockets, metric=metric, error=_error(error))
    row = _measure(system.name, count, metric, (used1 - used0) / max(count, 1), "bytes")
    row.detail = {"used_memory_before": used0, "used_memory_after": used1, "sessions": count}
    if count < held.connected * 0.95:
        row.error = f"only {count} of {held.connected} sessions reached Redis"
    print(f" {row.value or 0:,.0f} bytes/session over {len(layout.servers)} server(s)")
    return row


def _measure(system: str, conns: int, metric: str, value: float | None, unit: str = "") -> Row:
    return Row("fleet", system, conns, metric=metric, value=value, unit=unit)


def _fleet_ratios(rows: list[Row]) -> list[Row]:
    """Each layout's msgs/s over one Redis's."""
    load = {row.system: row.msgs_per_s for row in rows if row.is_load and not row.error}
    single = load.get("redis-single")
    found = []
    for mode in LAYOUTS[1:]:
        name = f"redis-{mode}"
        value = load.get(name)
        if single and value:
            found.append(_measure(name, FLEET_CONNS, "msgs/s / redis-single", value / single))
    for row in found:
        print(f"  fleet     {row.system:<14} {row.value or 0:.2f} x the msgs/s of one Redis")
    return found


FLOOD_NODES = {"node": [], "node-rate-1000": ["--max-frames-per-second", "1000"]}


def floods(plan: Plan) -> list[Row]:
    """Fresh clients' round trips, quiet and during a 4 MiB newline flood, in one run; with
    the defaults and with ``--max-frames-per-second 1000``."""
    rows: list[Row] = []
    for name, extra in FLOOD_NODES.items():
        rows += _flood(plan, name, extra)
    return rows


def _flood(plan: Plan, name: str, extra: list[str]) -> list[Row]:
    metrics = ("fresh p50 quiet", "fresh max quiet", "fresh p50 flood", "fresh max flood")
    with _case(plan.log_dir, f"flood-{name}") as procs:
        try:
            _, address = start_upstream_echo(procs, "flood-upstream")
            argv = ["--framing", "line", *extra]
            node = launch_node(procs, "flood", [address], extra=argv).wait_ready()
            flood.wait_echo(node.listen, timeout=START_TIMEOUT)
            quiet = flood.summary(flood.fresh_round_trips(node.listen))
            flooder = flood.Flood(node.listen)
            flooder.start()
            try:
                during = flood.summary(flood.fresh_round_trips(node.listen))
            finally:
                flooder.close()
        except Exception as error:
            return [Row("flood", name, 1, metric=m, error=_error(error)) for m in metrics]
    values = (*quiet, *during)
    rows = [
        Row("flood", name, flood.FRESH, metric=m, value=v, unit="ms")
        for m, v in zip(metrics, values, strict=True)
    ]
    for label, at in (("p50", 0), ("max", 1)):
        ratio = during[at] / quiet[at] if quiet[at] else None
        rows.append(
            Row("flood", name, flood.FRESH, metric=f"{label} flood / {label} quiet", value=ratio)
        )
    for row in rows:
        print(f"  {name:<15} {row.metric:<22} {row.value or 0:>8.1f} {row.unit}")
    return rows


def storms(plan: Plan) -> list[Row]:
    """The storm on a 2-node fleet, then through HAProxy (if installed)."""
    rows: list[Row] = []
    sockets, rate, wait = plan.storm_sockets, plan.storm_rate, 30.0
    spy = plan.profile_dir / "storm-node-a.txt" if plan.profile_dir else None
    runs: list[tuple[str, int, Callable[[Procs], Storm]]] = [
        ("fleet-2-nodes", sockets, lambda p: fleet_storm(p, sockets, rate, wait, profile=spy))
    ]
    if haproxy_binary():
        capped = min(sockets, plan.haproxy_maxconn - 50)
        runs.append(
            (
                "haproxy",
                capped,
                lambda p: haproxy_storm(p, capped, rate, wait, maxconn=plan.haproxy_maxconn),
            )
        )
    else:
        plan.warnings.append(f"haproxy not on PATH: no HAProxy storm ({HAPROXY_INSTALL})")
    for name, count, run in runs:  # one fleet and one HAProxy storm
        print(f"  storm     {name:<14} {count:>5} sockets at {rate:g}/s ...", end="", flush=True)
        with Procs(plan.log_dir / f"storm-{name}") as procs:
            try:
                found = storm_rows(name, run(procs), rate)
            except Exception as error:
                found = [Row("storm", name, count, metric="all answered", error=_error(error))]
        rows += found
        shown = {row.metric: row for row in found}
        print(" " + ", ".join(_shown(row) for row in shown.values()))
    return rows


def _shown(row: Row) -> str:
    if row.error:
        return f"{row.metric}: {row.error}"
    return f"{row.metric} {row.value or 0:,.2f} {row.unit}"


def handoffs(plan: Plan) -> list[Row]:
    """One hot handoff under ``idle_sockets`` idle sockets and a 200-socket closed loop."""
    sockets = plan.idle_sockets
    print(f"  handoff   node {sockets:>5} idle + 200 looping ...", flush=True)
    with _case(plan.log_dir, "handoff") as procs:
        try:
            return handoff_case(procs, sockets)
        except Exception as error:
            print(f"  handoff   {_error(error)}")
            return [Row("handoff", "node", sockets, metric="pause", error=_error(error))]


def run_cases(plan: Plan, cases: list[str]) -> list[Row]:
    chosen = set(cases)
    rows: list[Row] = []
    if chosen & {"rr", "original"}:
        print("throughput (64-byte request/response):", flush=True)
        began = time.monotonic()
        rows += throughput(plan, chosen)
        print(f"  ({time.monotonic() - began:.0f} s)")
    steps: list[tuple[str, Callable[[Plan], list[Row]]]] = [
        ("idle", idle),
        ("redis-mem", redis_memory),
        ("broadcast", broadcasts),
        ("workers", workers),
        ("cross", cross),
        ("fleet", fleet),
        ("flood", floods),
        ("storm", storms),
        ("acks", acknowledgements),
        ("handoff", handoffs),
    ]
    for name, step in steps:
        if name in chosen:
            print(f"{name}:", flush=True)
            began = time.monotonic()
            rows += step(plan)
            print(f"  ({time.monotonic() - began:.0f} s)")
    return rows


ACKS_CONNS = 64
ACK_ROUNDS = 3
ACK_SYSTEMS = ("node-acks", "node-noacks")


def acknowledgements(plan: Plan) -> list[Row]:
    """``rr`` at 64 connections with and without acknowledgements, alternating (see the
    module's docstring)."""
    specs: list[tuple[str, str, Factory]] = [
        ("acks", "node-acks", lambda p: node_system(p, "node-acks")),
        ("acks", "node-noacks", lambda p: node_system(p, "node-noacks", acks=False)),
    ]
    with _case(plan.log_dir, "acks") as procs:
        started, failed = _start_all(procs, specs, (ACKS_CONNS,))
        if failed:
            return failed
        runs: list[list[Row]] = []
        for _ in range(ACK_ROUNDS):
            runs.append(_alternate(procs, started, (ACKS_CONNS,), plan))
    return _ack_summary(runs)


def _ack_summary(runs: list[list[Row]]) -> list[Row]:
    """The median row of each system, the msgs/s ratio within each round (median), and each
    system's CPU per message (node and upstream, µs)."""
    rows: list[Row] = []
    by_system: dict[str, list[Row]] = {name: [] for name in ACK_SYSTEMS}
    ratios = []
    for round_rows in runs:
        found = {row.system: row for row in round_rows if not row.error and row.msgs_per_s}
        for name, row in found.items():
            by_system[name].append(row)
        if len(found) == len(ACK_SYSTEMS):
            ratios.append(found["node-acks"].msgs_per_s / found["node-noacks"].msgs_per_s)  # type: ignore[operator]
    for name, found_rows in by_system.items():
        if not found_rows:
            rows.append(Row("acks", name, ACKS_CONNS, error="error: no successful run"))
            continue
        middle = _median_row(found_rows)
        rows.append(middle)
        cpu = [_cpu_per_message(row) for row in found_rows]
        value = statistics.median([c for c in cpu if c is not None] or [math.nan])
        rows.append(Row("acks", name, ACKS_CONNS, metric="CPU per msg, node+upstream",
                        value=value, unit="µs"))  # fmt: skip
    if ratios:
        rows.append(Row("acks", "node-acks", ACKS_CONNS, metric="msgs/s acks / no acks",
                        value=statistics.median(ratios),
                        detail={"runs": ratios, "range": [min(ratios), max(ratios)]}))  # fmt: skip
    for row in rows:
        if not row.is_load:
            print(f"  acks      {row.system:<14} {row.metric}: {row.value or 0:,.3f} {row.unit}")
    return rows


def _median_row(rows: list[Row]) -> Row:
    def middle(values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return statistics.median(known) if known else None

    first = rows[0]
    return dataclasses.replace(
        first,
        msgs_per_s=middle([r.msgs_per_s for r in rows]),
        p50_us=middle([r.p50_us for r in rows]),
        p99_us=middle([r.p99_us for r in rows]),
        p999_us=middle([r.p999_us for r in rows]),
        cpu_proxy=middle([r.cpu_proxy for r in rows]),
        cpu_upstream=middle([r.cpu_upstream for r in rows]),
        cpu_loadgen=middle([r.cpu_loadgen for r in rows]),
        detail={**first.detail, "runs": [r.msgs_per_s for r in rows]},
    )


def _cpu_per_message(row: Row) -> float | None:
    if not row.msgs_per_s or row.cpu_proxy is None or row.cpu_upstream is None:
        return None
    return (row.cpu_proxy + row.cpu_upstream) / 100 / row.msgs_per_s * 1e6
