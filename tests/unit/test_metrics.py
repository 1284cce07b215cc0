"""The node's metrics: bounded label sets are exported from the start, and every drop reason the
code counts is one of them."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from paradoxplex.node.metrics import DROP_REASONS, Metrics
from paradoxplex.shared.admission import Refusal

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [
    *sorted((ROOT / "node" / "paradoxplex").rglob("*.py")),
    *sorted((ROOT / "shared" / "paradoxplex" / "shared").rglob("*.py")),
]


def counted_drop_reasons() -> set[str]:
    """Each literal reason the code counts: ``….drops.labels("x")`` and ``Drop("x")``."""
    found: set[str] = set()
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            first = node.args[0]
            if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
                continue
            func = node.func
            labels_of_drops = (
                isinstance(func, ast.Attribute)
                and func.attr == "labels"
                and isinstance(func.value, ast.Attribute)
                and func.value.attr == "drops"
            )
            if labels_of_drops or (isinstance(func, ast.Name) and func.id == "Drop"):
                found.add(first.value)
    return found


def test_every_drop_reason_the_code_counts_is_exported_from_the_start() -> None:
    counted = counted_drop_reasons()
    assert len(counted) >= 10  # the scan finds them
    assert counted <= set(DROP_REASONS), sorted(counted - set(DROP_REASONS))


def samples(text: str, name: str) -> dict[str, float]:
    """``{labels: value}`` of one metric in an exposition."""
    pattern = re.compile(rf"^{name}(\{{[^}}]*\}})? (\S+)$", re.MULTILINE)
    return {match[1] or "": float(match[2]) for match in pattern.finditer(text)}


def test_drops_refusals_and_bus_directions_are_zero_before_anything_happens() -> None:
    text = Metrics().exposition()[0].decode()
    drops = samples(text, "paradoxplex_drops_total")
    assert drops == {f'{{reason="{reason}"}}': 0.0 for reason in DROP_REASONS}
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
