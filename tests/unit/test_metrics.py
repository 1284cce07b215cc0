"""The node's metrics: bounded label sets are exported from the start (at 0), the node counts
bad input under no kind that is not listed, and the gauges the alerts compare against
(``monitoring/alerts``). Drop reasons are held to their enum by ``test_drops.py``."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from paradoxplex.node.metrics import BAD_INPUT_KINDS, Metrics
from paradoxplex.shared.admission import Refusal
from paradoxplex.shared.drops import DropReason

ROOT = Path(__file__).parents[2]
SOURCES = sorted((ROOT / "node").rglob("*.py")) + sorted((ROOT / "shared").rglob("*.py"))


def samples(text: str, name: str) -> dict[str, float]:
    """``{labels: value}`` of one metric in an exposition."""
    pattern = re.compile(rf"^{name}(\{{[^}}]*\}})? (\S+)$", re.MULTILINE)
    return {match[1] or "": float(match[2]) for match in pattern.finditer(text)}


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


def series(metrics: Metrics, name: str, label: str) -> dict[str, float]:
    return {
        sample.labels[label]: sample.value
        for family in metrics.registry.collect()
        for sample in family.samples
        if sample.name == name
    }


def test_refusals_and_bus_directions_are_zero_before_anything_happens() -> None:
    text = Metrics().exposition()[0].decode()
    refused = samples(text, "paradoxplex_sockets_refused_total")
    assert refused == {f'{{reason="{refusal.value}"}}': 0.0 for refusal in Refusal}
    assert '{reason="fd_limit"}' in refused
    bus = samples(text, "paradoxplex_bus_messages_total")
    assert bus == {'{direction="in"}': 0.0, '{direction="out"}': 0.0}


def test_the_limits_and_the_rotation_are_gauges() -> None:
    metrics = Metrics()
    metrics.max_connections.set(250)
    metrics.upstreams_in_rotation.set_function(lambda: 2)
    text = metrics.exposition()[0].decode()
    assert samples(text, "paradoxplex_max_connections") == {"": 250.0}
    assert samples(text, "paradoxplex_upstreams_in_rotation") == {"": 2.0}
    assert "# TYPE paradoxplex_max_connections gauge" in text


def test_the_scan_finds_the_kinds_it_should() -> None:
    assert {"proxy_header", "frame_too_large"} <= labels_used("bad_input")


def test_every_bad_input_kind_the_node_counts_is_listed() -> None:
    used = labels_used("bad_input")
    assert used <= set(BAD_INPUT_KINDS), sorted(used - set(BAD_INPUT_KINDS))


@pytest.mark.parametrize(
    ("name", "label", "known"),
    [
        ("paradoxplex_drops_total", "reason", tuple(reason.value for reason in DropReason)),
        ("paradoxplex_bad_input_total", "kind", BAD_INPUT_KINDS),
        ("paradoxplex_sockets_refused_total", "reason", tuple(r.value for r in Refusal)),
    ],
)
def test_every_known_reason_is_exported_at_zero_from_the_start(
    name: str, label: str, known: tuple[str, ...]
) -> None:
    assert series(Metrics(), name, label) == dict.fromkeys(known, 0.0)
