"""Results: one ``Row`` per measurement, the printed tables, the ratios, the JSON file.

A row is either a load run (msgs/s, latency percentiles, CPU of each process) or a single
measured value (bytes per idle socket, broadcast time, ...). A row with ``error`` set is
printed as ``n/a (error ...)`` and left out of the ratios.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

BUSY_OTHER = 25.0  # % of a core used by processes outside the run: the numbers are noisy


@dataclass
class Row:
    case: str
    system: str
    conns: int
    msgs_per_s: float | None = None
    p50_us: float | None = None
    p99_us: float | None = None
    p999_us: float | None = None
    cpu_proxy: float | None = None  # % of one core: the node(s) or HAProxy
    cpu_upstream: float | None = None  # upstream process(es), or the C echo server
    cpu_loadgen: float | None = None
    metric: str = ""  # for single-value rows: what ``value`` is
    value: float | None = None
    unit: str = ""
    error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def is_load(self) -> bool:
        return not self.metric


def _num(value: float | None, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


LOAD_COLUMNS: list[tuple[str, int, Callable[[Row], str]]] = [
    ("case", 10, lambda r: r.case),
    ("system", 14, lambda r: r.system),
    ("conns", 6, lambda r: str(r.conns)),
    ("msgs/s", 9, lambda r: _num(r.msgs_per_s)),
    ("p50 µs", 8, lambda r: _num(r.p50_us)),
    ("p99 µs", 8, lambda r: _num(r.p99_us)),
    ("p999 µs", 8, lambda r: _num(r.p999_us)),
    ("CPU node/haproxy %", 18, lambda r: _num(r.cpu_proxy)),
    ("CPU upstream %", 14, lambda r: _num(r.cpu_upstream)),
    ("CPU loadgen %", 13, lambda r: _num(r.cpu_loadgen)),
]
VALUE_COLUMNS: list[tuple[str, int, Callable[[Row], str]]] = [
    ("case", 10, lambda r: r.case),
    ("system", 14, lambda r: r.system),
    ("sockets", 7, lambda r: str(r.conns)),
    ("measure", 30, lambda r: r.metric),
    ("value", 12, lambda r: _num(r.value, 1 if r.value is not None and r.value < 100 else 0)),
    ("unit", 8, lambda r: r.unit),
]


def _table(rows: Sequence[Row], columns: list[tuple[str, int, Callable[[Row], str]]]) -> str:
    head = " | ".join(name.ljust(width) for name, width, _ in columns)
    lines = [head, "-" * len(head)]
    for row in rows:
        if row.error:
            cells = [get(row).ljust(width) for _, width, get in columns[:3]]
            lines.append(" | ".join(cells) + f" | n/a ({row.error})")
            continue
        cells = [get(row).rjust(width) for _, width, get in columns]
        cells[:2] = [get(row).ljust(width) for _, width, get in columns[:2]]
        note = _notes(row)
        lines.append(" | ".join(cells) + (f"  {note}" if note else ""))
    return "\n".join(lines)


def _notes(row: Row) -> str:
    """Problems worth a glance: lost or wrong echoes, closed sockets, a busy loadgen."""
    notes = []
    for key in ("mismatches", "closed", "stalled", "connect_failed"):
        if row.detail.get(key):
            notes.append(f"{key}={row.detail[key]}")
    if row.cpu_loadgen is not None and row.cpu_loadgen > 80:
        notes.append("loadgen-bound")
    other = row.detail.get("cpu_other")
    if isinstance(other, int | float) and other > BUSY_OTHER:
        notes.append(f"other CPU {other:.0f}%")
    if row.detail.get("note"):
        notes.append(str(row.detail["note"]))
    return "; ".join(notes)


def render(rows: Sequence[Row], ratios: dict[str, float | str]) -> str:
    load = [row for row in rows if row.is_load]
    values = [row for row in rows if not row.is_load]
    parts = []
    if load:
        parts += ["", _table(load, LOAD_COLUMNS)]
    if values:
        parts += ["", _table(values, VALUE_COLUMNS)]
    if ratios:
        width = max(len(name) for name in ratios)
        parts += ["", "targets:"]
        for name, ratio in ratios.items():
            if isinstance(ratio, str):
                shown = ratio
            else:
                shown = f"{ratio:,.0f}" if abs(ratio) >= 100 else f"{ratio:.3g}"
            parts.append(f"  {name.ljust(width)}  {shown}")
    return "\n".join(parts)


# ratios -----------------------------------------------------------------------------------


def _find(rows: Sequence[Row], case: str, system: str, conns: int | None = None) -> Row | None:
    for row in rows:
        wanted = conns is None or row.conns == conns
        if row.case == case and row.system == system and row.error is None and wanted:
            return row
    return None


def _ratio(top: float | None, bottom: float | None) -> float | str:
    if top is None or bottom is None:
        return "n/a"
    return top / bottom if bottom else "n/a"


def _value(rows: Sequence[Row], case: str, system: str, metric: str) -> float | str:
    for row in rows:
        if (row.case, row.system, row.metric) == (case, system, metric):
            return row.value if row.error is None and row.value is not None else "n/a"
    return "n/a"


def _real(value: float | str) -> float | None:
    return value if isinstance(value, float | int) else None


def ratios(rows: Sequence[Row]) -> dict[str, float | str]:
    """What the performance targets are about; absent rows give ``n/a``."""

    def msgs(case: str, system: str, conns: int) -> float | None:
        row = _find(rows, case, system, conns)
        return row.msgs_per_s if row else None

    def p50(case: str, system: str, conns: int) -> float | None:
        row = _find(rows, case, system, conns)
        return row.p50_us if row else None

    def cpu_us(case: str, system: str, conns: int) -> float | str:
        """The node's CPU µs per message: its CPU seconds over the messages."""
        row = _find(rows, case, system, conns)
        if row is None or not row.msgs_per_s or row.cpu_proxy is None:
            return "n/a"
        return row.cpu_proxy / 100 / row.msgs_per_s * 1e6

    def storm(system: str, metric: str) -> float | str:
        return _value(rows, "storm", system, metric)

    found: dict[str, float | str] = {
        "node/haproxy msgs/s @1000": _ratio(msgs("rr", "node", 1000), msgs("rr", "haproxy", 1000)),
        "node/haproxy msgs/s @64": _ratio(msgs("rr", "node", 64), msgs("rr", "haproxy", 64)),
        "node/haproxy p50 @1": _ratio(p50("rr", "node", 1), p50("rr", "haproxy", 1)),
        "node p50 µs @1": p50("rr", "node", 1) or "n/a",
        "original-proto msgs/s @64": msgs("original", "node-original", 64) or "n/a",
        "original/batch msgs/s @64": _ratio(
            msgs("original", "node-original", 64), msgs("rr", "node", 64)
        ),
        "cross-node/local msgs/s @64": _ratio(
            msgs("cross", "fleet-cross", 64), msgs("cross", "fleet-local", 64)
        ),
        "RSS bytes per idle socket (node)": _value(rows, "idle", "node", "RSS per idle socket"),
        "Redis bytes per session": _value(rows, "redis-mem", "node+redis", "Redis per session"),
        "broadcast 2 nodes, last arrival ms": _value(
            rows, "broadcast", "fleet-2-nodes", "last arrival"
        ),
        "node CPU µs/msg @64 (batch)": cpu_us("rr", "node", 64),
        "node/node-base msgs/s @64": _ratio(msgs("rr", "node", 64), msgs("rr", "node-base", 64)),
        "node-base CPU µs/msg @64": cpu_us("rr", "node-base", 64),
        "node CPU µs/msg @64 (original)": cpu_us("original", "node-original", 64),
        "storm: all answered s": storm("fleet-2-nodes", "all answered"),
        "storm: all findable on B s": storm("fleet-2-nodes", "all findable on B"),
        "storm: node conns/s": storm("fleet-2-nodes", "connections/s"),
        "storm: node/haproxy conns/s": _ratio(
            _real(storm("fleet-2-nodes", "connections/s")), _real(storm("haproxy", "connections/s"))
        ),
        "handoff pause ms": _value(rows, "handoff", "node", "pause"),
        "handoff sockets kept": _value(rows, "handoff", "node", "sockets kept"),
        "handoff requests lost or twice": _value(rows, "handoff", "node", "requests lost or twice"),
        "workers2/workers1 msgs/s @64": _ratio(
            msgs("workers", "workers-2", 64), msgs("workers", "workers-1", 64)
        ),
        "workers2/workers1 msgs/s @1000": _ratio(
            msgs("workers", "workers-2", 1000), msgs("workers", "workers-1", 1000)
        ),
    }
    return found


def write_json(
    path: Path, meta: dict[str, Any], rows: Sequence[Row], found: dict[str, Any]
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {
        **meta,
        "rows": [dataclasses.asdict(row) for row in rows],
        "ratios": found,
    }
    path.write_bytes(orjson.dumps(body, option=orjson.OPT_INDENT_2))
