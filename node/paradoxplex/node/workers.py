"""``--workers N``: N node processes sharing the listener (SO_REUSEPORT), each a fleet member."""

from __future__ import annotations

from paradoxplex.shared.config import NodeConfig


def run_workers(config: NodeConfig, argv: list[str]) -> int:
    raise NotImplementedError
