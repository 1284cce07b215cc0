"""PNG charts of a run, drawn with matplotlib (the ``bench`` extra: ``pip install -e '.[bench]'``).

- ``<stamp>-msgs.png``: msgs/s against connections for the node, HAProxy and the C echo (and
  the original-proto node), the range of the repeated runs as error bars;
- ``<stamp>-latency.png``: p50, p99 and p99.9 round-trip latency per system and connections;
- ``<stamp>-storm.png``: the reconnect storm's answers over time (cumulative), fleet and HAProxy.

``python -m bench.charts RESULT.json`` draws them again from a run's JSON.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from bench.report import Row

SYSTEMS = (
    ("rr", "node", "node (batch)"),
    ("original", "node-original", "node (original proto)"),
    ("rr", "haproxy", "HAProxy + C echo"),
    ("rr", "c-echo", "C echo"),
)


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def draw(rows: Sequence[Row], out_dir: Path, stamp: str) -> list[Path]:
    """Every chart the rows allow; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    written = []
    for name, chart in (("msgs", _msgs), ("latency", _latency), ("storm", _storm)):
        path = out_dir / f"{stamp}-{name}.png"
        if chart(rows, path):
            written.append(path)
    return written


def _load(rows: Sequence[Row], case: str, system: str) -> list[Row]:
    found = [r for r in rows if (r.case, r.system) == (case, system) and r.is_load]
    return sorted((r for r in found if r.error is None), key=lambda r: r.conns)


def _msgs(rows: Sequence[Row], path: Path) -> bool:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    drawn = False
    for case, system, label in SYSTEMS:
        series = [r for r in _load(rows, case, system) if r.msgs_per_s]
        if not series:
            continue
        xs = [r.conns for r in series]
        ys = [r.msgs_per_s or 0.0 for r in series]
        spans = [r.detail.get("range", [y, y]) for r, y in zip(series, ys, strict=True)]
        errors = [[y - s[0] for s, y in zip(spans, ys, strict=True)]]
        errors.append([s[1] - y for s, y in zip(spans, ys, strict=True)])
        ax.errorbar(xs, ys, yerr=errors, marker="o", capsize=4, label=label)
        drawn = True
    if not drawn:
        plt.close(fig)
        return False
    ax.set_xscale("log")
    ax.set_xlabel("connections")
    ax.set_ylabel("msgs/s (64-byte request/response)")
    ax.set_title("Throughput: median of the runs, bars show the range")
    ax.grid(True, alpha=0.3)
    ax.legend()
    _save(fig, path)
    return True


def _latency(rows: Sequence[Row], path: Path) -> bool:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 4), sharey=True)
    drawn = False
    for ax, (field, title) in zip(
        axes, (("p50_us", "p50"), ("p99_us", "p99"), ("p999_us", "p99.9")), strict=True
    ):
        for case, system, label in SYSTEMS:
            series = [r for r in _load(rows, case, system) if getattr(r, field)]
            if series:
                ax.plot([r.conns for r in series], [getattr(r, field) for r in series], "o-")
                ax.lines[-1].set_label(label)
                drawn = True
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"{title} round trip")
        ax.set_xlabel("connections")
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("µs")
    axes[0].legend(fontsize="small")
    if not drawn:
        plt.close(fig)
        return False
    _save(fig, path)
    return True


def _storm(rows: Sequence[Row], path: Path) -> bool:
    import matplotlib.pyplot as plt

    series = [
        r
        for r in rows
        if r.case == "storm" and r.metric == "all answered" and r.detail.get("answers_per_10ms")
    ]
    if not series:
        return False
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for row in series:
        counts: list[int] = list(row.detail["answers_per_10ms"])
        step = float(row.detail.get("bucket_ms", 10)) / 1000
        total, cumulative = 0, []
        for count in counts:
            total += count
            cumulative.append(total)
        xs = [step * (i + 1) for i in range(len(counts))]
        ax.plot(xs, cumulative, label=f"{row.system} ({row.conns:,} sockets)")
    ax.set_xlabel("seconds since the first connect")
    ax.set_ylabel("sockets answered")
    ax.set_title("Reconnect storm: each socket's first message answered")
    ax.grid(True, alpha=0.3)
    ax.legend()
    _save(fig, path)
    return True


def _save(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def rows_of(result: Path) -> list[Row]:
    body = orjson.loads(result.read_bytes())
    return [Row(**row) for row in body["rows"]]


def main() -> None:
    parser = argparse.ArgumentParser(description="draw a bench run's charts again")
    parser.add_argument("result", type=Path, help="a bench/results/<stamp>.json")
    parser.add_argument("--out", type=Path, default=None, help="directory (default: beside it)")
    args = parser.parse_args()
    out = args.out or args.result.parent
    for path in draw(rows_of(args.result), out, args.result.stem):
        print(path)


if __name__ == "__main__":
    main()
