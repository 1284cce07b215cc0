"""How the admin CLI prints records for people: aligned tables and key/value blocks.

Rules:
- Columns are separated by two spaces; no line ends in spaces; the last column is not padded.
- A missing value prints as ``-``; an ``at`` / ``*_at`` / ``since`` number is a UTC time
  (``2024-05-01T12:00:00Z``);
  a map prints as ``k=v,k=v``; a health view (a map) prints its ``state``/``health``/``status``.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

Columns = Sequence[tuple[str, str]]

NODE_COLUMNS: Columns = (
    ("ID", "id"),
    ("STATE", "state"),
    ("LISTEN", "listen"),
    ("ADMIN", "admin_url"),
    ("STARTED", "started_at"),
    ("SOCKETS", "sockets"),
    ("MSGS_IN", "messages_in"),
    ("MSGS_OUT", "messages_out"),
    ("DROPS", "drops"),
)
SOCKET_COLUMNS: Columns = (
    ("UUID", "uuid"),
    ("NODE", "node"),
    ("REMOTE", "remote"),
    ("STATE", "state"),
    ("IN", "bytes_in"),
    ("OUT", "bytes_out"),
    ("LABELS", "labels"),
)
UPSTREAM_COLUMNS: Columns = (
    ("ID", "id"),
    ("MODE", "mode"),
    ("NODES", "nodes"),
    ("SENT", "sent"),
    ("RECEIVED", "received"),
    ("ERRORS", "errors"),
    ("RTT_MS", "rtt_ms"),
    ("REASON", "reason"),
)
COUNTERS = ("sent", "received", "errors")
TIME_KEYS = ("at", "since")
VIEW_KEYS = ("state", "health", "status")


def format_time(value: float) -> str:
    """Seconds since the epoch as a UTC ISO time, to the second."""
    moment = datetime.datetime.fromtimestamp(value, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def format_view(value: Any) -> str:
    """One node's view of an upstream: its state word when it has one, else compact JSON."""
    if isinstance(value, Mapping):
        for key in VIEW_KEYS:
            if key in value:
                return str(value[key])
        return orjson.dumps(value).decode()
    return format_cell("", value)


def format_cell(key: str, value: Any) -> str:
    """One value for a table cell or a key/value line."""
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if (key.endswith("_at") or key in TIME_KEYS) and isinstance(value, int | float):
        return format_time(value)
    if isinstance(value, Mapping):
        pairs = [f"{k}={format_view(v)}" for k, v in value.items()]
        return ",".join(pairs) or "-"
    if isinstance(value, list | tuple):
        return ",".join(format_cell("", item) for item in value) or "-"
    return str(value)


def summarize_upstream(record: Mapping[str, Any]) -> dict[str, Any]:
    """An upstream with its nodes' views folded in: counters summed over the nodes, the
    slowest round-trip time, and each node's reason for not using it (``node: reason``)."""
    views = [
        (node, view)
        for node, view in (record.get("nodes") or {}).items()
        if isinstance(view, Mapping)
    ]
    summary = dict(record)
    for key in COUNTERS:
        summary[key] = sum(int(view.get(key) or 0) for _, view in views)
    rtts = [float(view["rtt_ms"]) for _, view in views if view.get("rtt_ms") is not None]
    summary["rtt_ms"] = f"{max(rtts):.1f}" if rtts else None
    reasons = [f"{node}: {view['reason']}" for node, view in views if view.get("reason")]
    summary["reason"] = "; ".join(reasons) or None
    return summary


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns, two spaces apart, the header first."""
    widths = [len(header) for header in headers]
    for row in rows:
        widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]
    lines = [headers, *rows]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def render_records(records: Sequence[Mapping[str, Any]], columns: Columns) -> str:
    """A table of ``records`` with the given (header, key) columns."""
    rows = [[format_cell(key, record.get(key)) for _, key in columns] for record in records]
    return render_table([header for header, _ in columns], rows)


def render_fields(record: Mapping[str, Any]) -> str:
    """One ``key  value`` line per field, keys aligned."""
    rows = [[key, format_cell(key, value)] for key, value in record.items()]
    width = max((len(key) for key, _ in rows), default=0)
    return "\n".join(f"{key.ljust(width)}  {value}" for key, value in rows)
