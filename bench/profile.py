"""Sample the node with py-spy during load runs, and summarise the samples.

``python -m bench.run --profile`` records, for each load run of a node system, py-spy's raw
("collapsed") stacks of the node process(es) over the measured window into
``bench/results/<timestamp>-profiles/<case>-<system>-<conns>.txt``. The files load in
https://www.speedscope.app or ``flamegraph.pl``, and

    python -m bench.profile FILE [--top N]

prints where the time goes: the functions with the most samples on the CPU (self) and on
the stack (inclusive). py-spy comes from PATH or the venv (``pip install py-spy``); it needs
ptrace rights (root, or ``kernel.yama.ptrace_scope = 0``).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections import Counter
from pathlib import Path

from bench.procs import Proc, Procs

RATE = 250  # samples per second


def py_spy() -> str | None:
    return shutil.which("py-spy") or shutil.which(str(Path(sys.executable).parent / "py-spy"))


def start_recording(procs: Procs, name: str, target: Proc, out: Path, seconds: float) -> Proc:
    """py-spy record, non-blocking (the node is not paused), children included."""
    binary = py_spy()
    if binary is None:
        raise RuntimeError("py-spy is not installed (pip install py-spy)")
    out.parent.mkdir(parents=True, exist_ok=True)
    argv = [
        binary,
        "record",
        "--pid",
        str(target.pid),
        "--subprocesses",
        "--nonblocking",
        "--rate",
        str(RATE),
        "--duration",
        str(max(1, round(seconds))),
        "--format",
        "raw",
        "--output",
        str(out),
    ]
    return procs.start(name, argv)


def _frame(frame: str) -> str:
    """``func (path/to/module.py:12)`` → ``func (module.py)``."""
    name, _, where = frame.partition(" (")
    module = where.rstrip(")").rpartition(":")[0].rpartition("/")[2]
    return f"{name} ({module})" if module else name


def summarise(path: Path, *, top: int = 20) -> str:
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame(f) for f in stack.split(";") if not f.startswith("process ")]
        frames = [f for f in frames if not f.startswith("thread ")]
        if not frames:
            continue
        total += count
        self_time[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    lines = [f"{path.name}: {total} samples"]
    for title, counter in (("self", self_time), ("inclusive", inclusive)):
        lines.append(f"  {title}:")
        for frame, count in counter.most_common(top):
            lines.append(f"    {100 * count / max(total, 1):5.1f}%  {frame}")
    return "\n".join(lines)


# The parts of a message's path, for ``--parts``: a sample belongs to the part of the
# innermost frame that matches (function or module, in this order); C time is charged to
# the nearest Python frame, so ``Session.write`` is mostly the write() syscall and a bare
# ``Runner.run`` is uvloop itself: epoll, the socket reads, its callbacks.
PARTS: list[tuple[str, tuple[str, ...]]] = [
    ("reply write (Session.write: transport.write, the syscall)", ("Session.write",)),
    ("framing", ("framing.py",)),
    ("protobuf and timestamps", ("_common.py", "timestamps.py", "_pb2.py", "message.py")),
    ("gRPC (aio calls, the poller thread)", ("_call.py", "Thread.run", "grpc", "_channel.py")),
    ("counters and metrics", ("metrics.py", "counters.py")),
    ("routing (replies, route_reply, balancer)", ("replies.py", "routing.py", "balancing.py")),
    ("queueing (pool, link queues, batches, flow)", ("pool.py", "upstream.py", "batches.py")),
    ("queueing (pool, link queues, batches, flow)", ("flow.py", "locks.py", "queues.py")),
    ("socket read path (Session.data_received)", ("session.py",)),
    ("fleet and bus", ("fleet_sync.py", "bus_endpoint.py", "courier.py", "redis")),
]
LOOP = "event loop (uvloop: epoll, socket reads, callbacks)"


def part_of(frames: list[str]) -> str:
    """The part a sample's stack (outermost first, ``func (module.py)``) is charged to."""
    if frames and frames[-1].startswith("Runner.run "):
        return LOOP
    for frame in reversed(frames):
        name, _, module = frame.partition(" (")
        for part, marks in PARTS:
            if any(mark == name or mark in module for mark in marks):
                return part
    return "other"


def parts(path: Path) -> tuple[int, Counter[str]]:
    """Samples of ``path`` per part of the message path."""
    found: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = [_frame(f) for f in stack.split(";")]
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if frames:
            found[part_of(frames)] += int(count_text)
            total += int(count_text)
    return total, found


def render_parts(path: Path, cpu_us: float | None) -> str:
    """A Markdown table: each part's share of the samples and, given the node's CPU µs per
    message, its µs per message."""
    total, found = parts(path)
    lines = [f"{path.name}: {total} samples", "", "| part | share | µs/msg |", "|---|---:|---:|"]
    for part, count in found.most_common():
        share = count / max(total, 1)
        per_msg = f"{share * cpu_us:.1f}" if cpu_us else "-"
        lines.append(f"| {part} | {100 * share:.1f}% | {per_msg} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="summarise py-spy raw stacks")
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument(
        "--parts", action="store_true", help="the share of each part of the message path"
    )
    parser.add_argument(
        "--cpu-us", type=float, default=None, help="node CPU µs per message: adds µs per part"
    )
    args = parser.parse_args()
    for path in args.files:
        print(render_parts(path, args.cpu_us) if args.parts else summarise(path, top=args.top))


if __name__ == "__main__":
    main()
