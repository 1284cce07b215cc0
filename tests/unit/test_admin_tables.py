"""How the admin CLI prints records: aligned tables, key/value lines, cells."""

from __future__ import annotations

from typing import Any

import pytest

from paradoxplex.admin.tables import (
    NODE_COLUMNS,
    SOCKET_COLUMNS,
    format_cell,
    format_time,
    format_view,
    render_fields,
    render_records,
    render_table,
)


def test_columns_are_aligned_without_trailing_spaces() -> None:
    text = render_table(["ID", "NAME"], [["a", "x"], ["long-id", ""]])
    assert text.splitlines() == ["ID       NAME", "a        x", "long-id"]


def test_an_empty_table_is_its_header() -> None:
    assert render_table(["A", "B"], []) == "A  B"


def test_records_take_their_columns() -> None:
    record = {
        "uuid": "u-1",
        "node": "n",
        "remote": "1.2.3.4:5",
        "state": "paused",
        "bytes_in": 10,
        "bytes_out": 0,
        "labels": {"a": "1", "b": "2"},
        "extra": "ignored",
    }
    lines = render_records([record], SOCKET_COLUMNS).splitlines()
    assert lines[1].split() == ["u-1", "n", "1.2.3.4:5", "paused", "10", "0", "a=1,b=2"]


def test_fields_are_aligned() -> None:
    assert render_fields({"id": "x", "started_at": 0}).splitlines() == [
        "id          x",
        "started_at  1970-01-01T00:00:00Z",
    ]


def test_no_fields() -> None:
    assert render_fields({}) == ""


@pytest.mark.parametrize(
    ("key", "value", "cell"),
    [
        ("x", None, "-"),
        ("x", "", "-"),
        ("x", True, "yes"),
        ("x", False, "no"),
        ("x", 3, "3"),
        ("x", 2.5, "2.5"),
        ("connected_at", 1714564800.9, "2024-05-01T12:00:00Z"),
        ("connected_at", "yesterday", "yesterday"),
        ("labels", {}, "-"),
        ("labels", {"a": "b"}, "a=b"),
        ("nodes", {"n1": {"state": "ready", "since": 1}, "n2": "down"}, "n1=ready,n2=down"),
        ("x", ["a", 1], "a,1"),
        ("x", [], "-"),
    ],
)
def test_cells(key: str, value: Any, cell: str) -> None:
    assert format_cell(key, value) == cell


@pytest.mark.parametrize(
    ("view", "text"),
    [
        ({"health": "live"}, "live"),
        ({"status": "ok"}, "ok"),
        ({"ready": True}, '{"ready":true}'),
        ("ready", "ready"),
        (None, "-"),
    ],
)
def test_health_views(view: Any, text: str) -> None:
    assert format_view(view) == text


def test_times_are_utc() -> None:
    assert format_time(86400) == "1970-01-02T00:00:00Z"


def test_the_node_table_shows_state_and_counters() -> None:
    """``admin nodes`` shows what ``--json`` has: each node's state and its counters."""
    record = {
        "id": "n1", "listen": "127.0.0.1:7999", "admin_url": "http://127.0.0.1:8000",
        "started_at": 0, "sockets": 2, "state": "degraded", "messages_in": 12,
        "messages_out": 11, "drops": 1, "heartbeat_at": 5,
    }  # fmt: skip
    header, row = render_records([record], NODE_COLUMNS).splitlines()
    assert header.split() == [
        "ID",
        "STATE",
        "LISTEN",
        "ADMIN",
        "STARTED",
        "SOCKETS",
        "MSGS_IN",
        "MSGS_OUT",
        "DROPS",
    ]
    assert row.split() == [
        "n1", "degraded", "127.0.0.1:7999", "http://127.0.0.1:8000", "1970-01-01T00:00:00Z",
        "2", "12", "11", "1",
    ]  # fmt: skip
