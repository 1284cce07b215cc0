"""Building a node for its config: in-memory fleet without ``--redis``, Redis with it."""

from __future__ import annotations

from paradoxplex.node.node import Node
from paradoxplex.shared.config import NodeConfig
from paradoxplex.shared.errors import ConfigError, FleetUnavailable
from paradoxplex.shared.fleet import MemoryBus, MemoryFleet, MemoryHub


async def build_node(config: NodeConfig) -> Node:
    """A node ready to start; an unreachable Redis at start-up is a ConfigError."""
    if not config.redis:
        hub = MemoryHub()
        return Node(config, fleet=MemoryFleet(hub), bus=MemoryBus(hub))
    from paradoxplex.node.redis_fleet import RedisBus, RedisFleet

    fleet = RedisFleet.from_url(config.redis, prefix=config.key_prefix)
    try:
        if not await fleet.ping():
            raise FleetUnavailable("no answer to PING")
    except FleetUnavailable as error:
        await fleet.close()
        raise ConfigError("redis", f"cannot reach {config.redis}: {error.reason}") from None
    bus = RedisBus.from_url(config.redis, prefix=config.key_prefix, is_alive=fleet.node_alive)
    return Node(config, fleet=fleet, bus=bus)
