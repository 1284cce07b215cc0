"""Repeated runs: one row per measurement as the median of the runs, with their range, and
each target of the performance issue checked against the median (met or missed) and shown
with its range.

Ratios are taken within each run (node and HAProxy measured in the same run, alternating),
then their median and range across the runs.
"""

from __future__ import annotations

import dataclasses
import operator
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bench.report import Row

MEDIAN_FIELDS: tuple[str, ...] = ("msgs_per_s", "p50_us", "p99_us", "p999_us", "cpu_proxy")
MEDIAN_FIELDS += ("cpu_upstream", "cpu_loadgen", "value")


def _key(row: Row) -> tuple[str, str, str, int]:
    """Load rows are matched by connections, single values by what they measure."""
    return (row.case, row.system, row.metric, row.conns if row.is_load else 0)


def _primary(row: Row) -> float | None:
    return row.msgs_per_s if row.is_load else row.value


def merge(runs: Sequence[Sequence[Row]]) -> list[Row]:
    """One row per key, in first-seen order: medians of the runs that did not fail, their
    range in ``detail["range"]`` and every run's value in ``detail["runs"]``."""
    groups: dict[tuple[str, str, str, int], list[Row]] = {}
    for rows in runs:
        for row in rows:
            groups.setdefault(_key(row), []).append(row)
    return [_merged(group) for group in groups.values()]


def _merged(group: list[Row]) -> Row:
    good = [row for row in group if row.error is None]
    if len(group) == 1 or not good:
        return group[0]
    good.sort(key=lambda row: _primary(row) or 0.0)
    middle = dataclasses.replace(good[len(good) // 2], detail=dict(good[len(good) // 2].detail))
    for name in MEDIAN_FIELDS:
        values = [v for v in (getattr(row, name) for row in good) if v is not None]
        if values:
            setattr(middle, name, statistics.median(values))
    primaries = [p for p in (_primary(row) for row in good) if p is not None]
    middle.detail["runs"] = primaries
    if primaries:
        middle.detail["range"] = [min(primaries), max(primaries)]
    failed = len(group) - len(good)
    if failed:
        middle.detail["note"] = f"{failed} of {len(group)} runs failed: {_first_error(group)}"
    return middle


def _first_error(group: list[Row]) -> str:
    return next((row.error or "" for row in group if row.error), "")[:160]


@dataclass(frozen=True)
class Spread:
    median: float | None
    low: float | None
    high: float | None
    runs: int

    def shown(self, digits: int = 3) -> str:
        if self.median is None or self.low is None or self.high is None:
            return "n/a"
        if self.runs == 1:
            return _fmt(self.median, digits)
        low, high = _fmt(self.low, digits), _fmt(self.high, digits)
        return f"{_fmt(self.median, digits)} ({low} to {high})"


def _fmt(value: float, digits: int) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.{digits}g}"


def spreads(per_run: Sequence[dict[str, float | str]]) -> dict[str, Spread]:
    """Each ratio's median and range over the runs where it was measured."""
    names = list(dict.fromkeys(name for ratios in per_run for name in ratios))
    found = {}
    for name in names:
        numbers = [float(v) for r in per_run if isinstance(v := r.get(name), float | int)]
        if numbers:
            found[name] = Spread(
                statistics.median(numbers), min(numbers), max(numbers), len(numbers)
            )
        else:
            found[name] = Spread(None, None, None, 0)
    return found


AT_LEAST: Callable[[float, float], bool] = operator.ge
AT_MOST: Callable[[float, float], bool] = operator.le

# issue 14's targets: (ratio name, compare, goal, as written)
TARGETS: list[tuple[str, Callable[[float, float], bool], float, str]] = [
    ("node/haproxy msgs/s @64", AT_LEAST, 0.75, "≥ 0.75"),
    ("node/haproxy msgs/s @1000", AT_LEAST, 1.5, "≥ 1.5"),
    ("node p50 µs @1", AT_MOST, 200.0, "≤ 200 µs"),
    ("node CPU µs/msg @64 (original)", AT_MOST, 40.0, "≤ 40 µs"),
    ("original-proto msgs/s @64", AT_LEAST, 12_000.0, "≥ 12,000"),
    ("storm: all answered s", AT_MOST, 2.0, "≤ 2 s"),
    ("storm: all findable on B s", AT_MOST, 3.0, "≤ 3 s"),
    ("storm: node/haproxy conns/s", AT_LEAST, 0.5, "≥ 0.5"),
    ("broadcast 2 nodes, last arrival ms", AT_MOST, 100.0, "≤ 100 ms"),
    ("RSS bytes per idle socket (node)", AT_MOST, 1536.0, "≤ 1,536 B"),
    ("Redis bytes per session", AT_MOST, 300.0, "≤ 300 B"),
    # issue 23's: a hot handoff of 10,000 idle sockets and 200 looping ones
    ("handoff pause ms", AT_MOST, 1000.0, "≤ 1,000 ms"),
    ("handoff requests lost or twice", AT_MOST, 0.0, "0"),
]


def verdicts(found: dict[str, Spread]) -> list[tuple[str, str, str, str]]:
    """(target, goal, median (range), met / missed / not measured) for each target."""
    lines = []
    for name, compare, goal, written in TARGETS:
        spread = found.get(name)
        if spread is None or spread.median is None:
            lines.append((name, written, "n/a", "not measured"))
            continue
        verdict = "met" if compare(spread.median, goal) else "missed"
        lines.append((name, written, spread.shown(), verdict))
    return lines


def render_targets(found: dict[str, Spread]) -> str:
    rows = verdicts(found)
    width = max(len(name) for name, *_ in rows)
    lines = ["", "targets of issues 14 and 23 (median of the runs, range in brackets):"]
    for name, goal, shown, verdict in rows:
        lines.append(f"  {name.ljust(width)}  {goal:<10}  {shown:<28}  {verdict}")
    return "\n".join(lines)
