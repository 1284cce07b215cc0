"""The node's metrics: bounded label sets are exported from the start, and the gauges the
alerts compare against (``monitoring/alerts``)."""

from __future__ import annotations

import re

from paradoxplex.node.metrics import Metrics
from paradoxplex.shared.admission import Refusal


def samples(text: str, name: str) -> dict[str, float]:
    """``{labels: value}`` of one metric in an exposition."""
    pattern = re.compile(rf"^{name}(\{{[^}}]*\}})? (\S+)$", re.MULTILINE)
    return {match[1] or "": float(match[2]) for match in pattern.finditer(text)}


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
