"""``python -m bench.run``: paradoxplex's benchmarks (``make bench``; not part of the tests).

Prints a table and the ratios the performance targets are about, and writes everything to
``bench/results/<timestamp>.json``. Every process it starts is stopped when its case ends;
all traffic stays on 127.0.0.1; each load run stops by itself.

    python -m bench.run                      # every case, 3 runs of the target cases (~15 min)
    python -m bench.run --quick              # 1 s runs, small sizes, one run (about 2 minutes)
    python -m bench.run --cases storm --repeat 1
    python -m bench.run --cases rr,idle --duration 10
    python -m bench.run --cases rr --profile   # py-spy samples of the node per load run
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import charts, profile, systems
from bench.cases import ALL_CASES, Plan, run_cases
from bench.measure import Timing
from bench.procs import BENCH, BUILD, BenchError, Procs, build, raise_nofile
from bench.repeats import Spread, merge, render_targets, spreads, verdicts
from bench.report import Row, ratios, render, write_json

RESULTS = BENCH / "results"
REPEATED = ("rr", "original", "idle", "redis-mem", "broadcast", "storm", "handoff")  # targets
CHARTS_INSTALL = ".venv/bin/pip install -e '.[bench]', or make bench"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--duration", type=float, default=None, help="seconds per load run (5)")
    parser.add_argument("--quick", action="store_true", help="short runs and small sizes")
    parser.add_argument(
        "--cases",
        default=",".join(ALL_CASES),
        help=f"comma-separated, from: {', '.join(ALL_CASES)} (default: all)",
    )
    parser.add_argument(
        "--sockets", type=int, default=None, help="idle/broadcast sockets (10000; quick 2000)"
    )
    parser.add_argument(
        "--node-loop",
        choices=("auto", "uvloop", "asyncio"),
        default="auto",
        help="the node's event loop: as shipped (uvloop), the standard one, or auto: as "
        "shipped unless the node cannot echo with it",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="runs of the target cases (rr, original, idle, redis-mem, broadcast, storm), "
        "reported as the median with the range (3; quick 1)",
    )
    parser.add_argument(
        "--storm-rate", type=float, default=10_000.0, help="storm connects per second (10000)"
    )
    parser.add_argument(
        "--baseline",
        default=None,
        metavar="REV",
        help="rr also runs a node of git revision REV (node-base): a change as a ratio",
    )
    parser.add_argument("--no-charts", action="store_true", help="no PNG charts")
    parser.add_argument("--output", type=Path, default=None, help="JSON path (default results/)")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="sample the node with py-spy during each load run (see bench/profile.py)",
    )
    args = parser.parse_args(argv)
    unknown = set(args.cases.split(",")) - set(ALL_CASES)
    if unknown:
        parser.error(f"unknown case(s): {', '.join(sorted(unknown))}")
    return args


def make_plan(args: argparse.Namespace, log_dir: Path, nofile: int, stamp: str) -> Plan:
    quick = args.quick
    duration = args.duration if args.duration is not None else (1.0 if quick else 5.0)
    sockets = args.sockets or (2000 if quick else 10_000)
    # the node holds a file per socket; leave room for its own
    sockets = min(sockets, nofile - 500)
    return Plan(
        timing=Timing(duration=duration, warmup=0.5 if quick else 1.0),
        levels=(1, 64) if quick else (1, 64, 1000),
        idle_sockets=sockets,
        fleet_levels=(64,) if quick else (1, 64),
        worker_levels=(64,) if quick else (64, 1000),
        log_dir=log_dir,
        nofile=nofile,
        warnings=[],
        profile_dir=RESULTS / f"{stamp}-profiles" if args.profile else None,
        storm_sockets=sockets,
        storm_rate=args.storm_rate,
        baseline=systems.baseline_code(args.baseline) if args.baseline else None,
    )


def choose_node_loop(wanted: str, log_dir: Path, warnings: list[str]) -> str:
    """``auto``: the node as shipped (uvloop) unless it cannot echo, then the standard loop."""
    if wanted != "auto":
        return wanted
    systems.NODE_LOOP["loop"] = "uvloop"
    with Procs(log_dir / "loop-check") as procs:
        try:
            systems.node_system(procs, "node-loop-check")
            return "uvloop"
        except BenchError as error:
            failure = str(error)
    warnings.append(
        f"the node as shipped (uvloop) does not echo: {failure}; "
        "node rows use the standard asyncio loop (--node-loop asyncio)"
    )
    return "asyncio"


def machine() -> dict[str, Any]:
    haproxy = systems.haproxy_binary()
    version = ""
    if haproxy:
        answer = subprocess.run([haproxy, "-v"], capture_output=True, text=True, timeout=10)
        version = answer.stdout.splitlines()[0] if answer.stdout else ""
    return {
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "haproxy": version or None,
    }


def run_repeated(plan: Plan, cases: list[str], repeat: int) -> tuple[list[Row], dict[str, Spread]]:
    """The target cases ``repeat`` times (each run alternates its systems), the others once;
    rows merged into medians with ranges, each ratio taken within a run."""
    repeated = [case for case in cases if case in REPEATED]
    once = run_cases(plan, [case for case in cases if case not in REPEATED])
    runs = []
    for run in range(repeat if repeated else 0):
        if repeat > 1:
            print(f"run {run + 1} of {repeat}", flush=True)
        runs.append(run_cases(plan, repeated))
    per_run = [ratios([*rows, *once]) for rows in runs or [[]]]
    return merge([*runs, once]), spreads(per_run)


def draw_charts(rows: list[Row], stamp: str) -> None:
    if not charts.available():
        print(f"charts skipped: no matplotlib ({CHARTS_INSTALL})", file=sys.stderr)
        return
    for path in charts.draw(rows, RESULTS, stamp):
        print(f"chart {path}")


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    """SIGTERM (e.g. from ``timeout``) unwinds like Ctrl-C: every case stops its children."""
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    log_dir = BUILD / "logs" / stamp
    nofile = raise_nofile()
    try:
        plan = make_plan(args, log_dir, nofile, stamp)
    except BenchError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 2
    if args.profile and profile.py_spy() is None:
        print(f"bench: --profile needs py-spy ({CHARTS_INSTALL})", file=sys.stderr)
        return 2
    cases = [case for case in ALL_CASES if case in args.cases.split(",")]
    started = time.monotonic()
    try:
        build("loadgen")
        build("echo_server")
    except BenchError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 1
    if not systems.haproxy_binary():
        message = "haproxy is not installed: every HAProxy row and ratio is skipped (n/a)"
        print(f"note: {message}; install it with: {systems.HAPROXY_INSTALL}", file=sys.stderr)
        plan.warnings.append(f"{message} ({systems.HAPROXY_INSTALL})")
    loop = choose_node_loop(args.node_loop, log_dir, plan.warnings)
    systems.NODE_LOOP["loop"] = loop
    for warning in plan.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(
        f"cases: {', '.join(cases)}; {plan.timing.duration:g} s per run after "
        f"{plan.timing.warmup:g} s warm-up; node loop: {loop}; logs in {log_dir}",
        flush=True,
    )
    rows, found = run_repeated(plan, cases, args.repeat or (1 if args.quick else 3))
    shown: dict[str, float | str] = {name: spread.shown() for name, spread in found.items()}
    print(render(rows, shown))
    print(render_targets(found))
    for warning in dict.fromkeys(plan.warnings):
        print(f"warning: {warning}")
    output = args.output or RESULTS / f"{stamp}.json"
    meta = {
        "started": stamp,
        "seconds": round(time.monotonic() - started, 1),
        "args": {key: str(value) for key, value in vars(args).items()},
        "cases": cases,
        "node_loop": loop,
        "machine": machine(),
        "warnings": plan.warnings,
        "logs": str(log_dir),
        "profiles": str(plan.profile_dir) if plan.profile_dir else None,
    }
    meta["targets"] = verdicts(found)
    write_json(output, meta, rows, {name: vars(spread) for name, spread in found.items()})
    print(f"\nwrote {output} ({meta['seconds']} s)")
    if not args.no_charts:
        draw_charts(rows, stamp)
    if plan.profile_dir is not None:
        print(f"profiles in {plan.profile_dir} (python -m bench.profile FILE summarises one)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
