"""Building a node for its config: in-memory fleet without ``--redis``, Redis with it."""

from __future__ import annotations

from paradoxplex.node.node import Node
from paradoxplex.shared.config import NodeConfig
from paradoxplex.shared.errors import ConfigError
from paradoxplex.shared.fleet import MemoryBus, MemoryFleet, MemoryHub


async def build_node(config: NodeConfig) -> Node:
    """A node ready to start; an unreachable Redis at start-up is a ConfigError."""
    if not config.redis:
        hub = MemoryHub()
        return Node(config, fleet=MemoryFleet(hub), bus=MemoryBus(hub))
    from paradoxplex.node.probes import redact, redis_problem
    from paradoxplex.node.redis_fleet import RedisBus, RedisFleet

    problem = await redis_problem(config.redis)
    if problem is not None:
        raise ConfigError("--redis", f"cannot reach {redact(config.redis)}: {problem}")
    fleet = RedisFleet.from_url(config.redis, prefix=config.key_prefix)
    node = Node(config, fleet=fleet)
    node.bus = RedisBus.from_url(
        config.redis,
        prefix=config.key_prefix,
        on_reconnect=node.resync,
        is_alive=fleet.node_alive,
    )
    return node
