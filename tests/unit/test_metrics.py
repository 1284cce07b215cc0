"""The node's metrics: every reason a drop, a refusal or bad input is counted under exists as
a series from the start, at 0, and the node counts under no reason that is not listed."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from paradoxplex.node.metrics import BAD_INPUT_KINDS, DROP_REASONS, Metrics
from paradoxplex.shared.admission import Refusal

ROOT = Path(__file__).parents[2]
SOURCES = sorted((ROOT / "node").rglob("*.py")) + sorted((ROOT / "shared").rglob("*.py"))


def labels_used(counter: str) -> set[str]:
    """The string literals passed to ``<anything>.<counter>.labels(...)`` in the product."""
    found: set[str] = set()
    for path in SOURCES:
        for call in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(call, ast.Call)
                and isinstance(call.func, ast.Attribute)
                and call.func.attr == "labels"
                and isinstance(call.func.value, ast.Attribute)
                and call.func.value.attr == counter
                and call.args
                and isinstance(call.args[0], ast.Constant)
                and isinstance(call.args[0].value, str)
            ):
                found.add(call.args[0].value)
    return found


def verdict_reasons() -> set[str]:
    """The reasons of the flow's ``Drop(...)`` and ``Close(...)`` verdicts (counted as drops)."""
    found: set[str] = set()
    for path in SOURCES:
        for call in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(call, ast.Call)
                and isinstance(call.func, ast.Name)
                and call.func.id in ("Drop", "Close")
                and call.args
                and isinstance(call.args[0], ast.Constant)
                and isinstance(call.args[0].value, str)
            ):
                found.add(call.args[0].value)
    return found


def series(metrics: Metrics, name: str, label: str) -> dict[str, float]:
    return {
        sample.labels[label]: sample.value
        for family in metrics.registry.collect()
        for sample in family.samples
        if sample.name == name
    }


def test_the_scan_finds_the_reasons_it_should() -> None:
    assert {"hold_timeout", "unknown_socket", "bus_hold_full"} <= labels_used("drops")
    assert {"write_buffer_full", "node_buffer_full"} <= verdict_reasons()
    assert {"proxy_header", "frame_too_large"} <= labels_used("bad_input")


def test_every_drop_reason_the_node_counts_is_listed() -> None:
    used = labels_used("drops") | verdict_reasons()
    assert used <= set(DROP_REASONS), sorted(used - set(DROP_REASONS))


def test_every_bad_input_kind_the_node_counts_is_listed() -> None:
    used = labels_used("bad_input")
    assert used <= set(BAD_INPUT_KINDS), sorted(used - set(BAD_INPUT_KINDS))


@pytest.mark.parametrize(
    ("name", "label", "known"),
    [
        ("paradoxplex_drops_total", "reason", DROP_REASONS),
        ("paradoxplex_bad_input_total", "kind", BAD_INPUT_KINDS),
        ("paradoxplex_sockets_refused_total", "reason", tuple(r.value for r in Refusal)),
    ],
)
def test_every_known_reason_is_exported_at_zero_from_the_start(
    name: str, label: str, known: tuple[str, ...]
) -> None:
    assert series(Metrics(), name, label) == dict.fromkeys(known, 0.0)
