"""The fleet backend, chosen once: one table from a backend name to its builder.

Rules:
- ``BACKENDS`` maps ``"memory"`` and ``"redis"`` to a builder; ``backend_name`` picks
  ``"redis"`` when the config names a Redis URL, ``"memory"`` otherwise.
- A builder returns a ``Backend`` whose state and bus are whole before any node exists: the
  node starts and closes them and never swaps one in afterwards.
- memory: one ``MemoryHub`` behind the state and the bus.
- redis: one ``FleetClient`` (its kind from the URL, ``redis.CLIENT_KINDS``) behind the state
  and the bus; the state owns it (the node closes the bus first, the state last). The bus asks
  the state whether a silent node is alive. A Redis that does not answer at start-up is
  ``ConfigError("redis", "cannot reach <url>: <reason>")``: one line, no node.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from paradoxplex.node.redis import RedisBus, RedisFleet, connect
from paradoxplex.shared.config import NodeConfig
from paradoxplex.shared.errors import ConfigError
from paradoxplex.shared.fleet import Backend, memory_backend

__all__ = ["BACKENDS", "backend_name", "build_backend"]

BackendBuilder = Callable[[NodeConfig], Awaitable[Backend]]


async def _memory(config: NodeConfig) -> Backend:
    return memory_backend()


async def _redis(config: NodeConfig) -> Backend:
    url = config.redis
    assert url is not None
    state = RedisFleet(connect(url), prefix=config.key_prefix, owns_client=True)
    if not await state.ping():
        await state.close()
        raise ConfigError("redis", f"cannot reach {url}: no answer to PING")
    bus = RedisBus(
        state.client, prefix=config.key_prefix, is_alive=state.node_alive, hold=config.bus_hold
    )
    return Backend(state, bus)


#: Backend name → how its state and bus are built.
BACKENDS: dict[str, BackendBuilder] = {
    "memory": _memory,
    "redis": _redis,
}


def backend_name(config: NodeConfig) -> str:
    return "redis" if config.redis else "memory"


async def build_backend(config: NodeConfig) -> Backend:
    """The state and bus ``config`` asks for, ready for ``Node(config, backend)``."""
    return await BACKENDS[backend_name(config)](config)
