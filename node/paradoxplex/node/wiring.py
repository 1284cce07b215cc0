"""Choosing the fleet implementation: in memory without ``--redis``, Redis with it."""

from __future__ import annotations

from paradoxplex.shared.config import NodeConfig
from paradoxplex.shared.errors import ConfigError
from paradoxplex.shared.fleet import FleetBus, FleetState, MemoryBus, MemoryFleet, MemoryHub


async def fleet_for(config: NodeConfig) -> tuple[FleetState, FleetBus]:
    """The fleet state and bus for ``config``; an unreachable Redis is a ConfigError."""
    if not config.redis:
        hub = MemoryHub()
        return MemoryFleet(hub), MemoryBus(hub)
    raise ConfigError("redis", "fleet mode is not available yet")
