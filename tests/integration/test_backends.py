"""The backend axis: one table, state and bus built together before any node exists."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from paradoxplex.node.fleet.backends import BACKENDS, backend_name, build_backend
from paradoxplex.node.fleet.memory import MemoryBus, MemoryFleet
from paradoxplex.node.fleet.redis import RedisBus, RedisFleet
from paradoxplex.shared.config import NodeConfig
from paradoxplex.shared.errors import ConfigError
from paradoxplex.shared.fleet import Backend
from tests.conftest import delete_prefix
from tests.support.bus import started
from tests.support.ports import free_port


@pytest_asyncio.fixture
async def redis_backend(redis_url: str, key_prefix: str) -> AsyncIterator[Backend]:
    backend = await build_backend(NodeConfig(redis=redis_url, key_prefix=key_prefix))
    try:
        yield backend
    finally:
        await backend.bus.close()
        await backend.state.close()
        await delete_prefix(redis_url, key_prefix)


def test_one_table_names_every_backend() -> None:
    assert set(BACKENDS) == {"memory", "redis"}
    assert backend_name(NodeConfig()) == "memory"
    assert backend_name(NodeConfig(redis="redis://r:6379/0")) == "redis"


async def test_without_redis_state_and_bus_share_one_hub() -> None:
    backend = await build_backend(NodeConfig())
    assert isinstance(backend.state, MemoryFleet)
    assert isinstance(backend.bus, MemoryBus)
    assert backend.state.hub is backend.bus.hub


async def test_with_redis_state_and_bus_share_one_client(redis_backend: Backend) -> None:
    state, bus = redis_backend.state, redis_backend.bus
    assert isinstance(state, RedisFleet)
    assert isinstance(bus, RedisBus)
    assert bus.client is state.client
    assert not bus.connected  # whole, but nobody listens before the node starts it
    await started(bus, "a")
    assert bus.connected


async def test_the_bus_asks_the_state_whether_a_node_is_alive(redis_backend: Backend) -> None:
    """A send to a node the state says is dead gives up at once, not after 5 s."""
    await started(redis_backend.bus, "a")
    loop = asyncio.get_running_loop()
    began = loop.time()
    assert not await redis_backend.bus.send("dead", b"lost")
    assert loop.time() - began < 1.0


async def test_closing_the_bus_leaves_the_state_its_client(redis_backend: Backend) -> None:
    await started(redis_backend.bus, "a")
    await redis_backend.bus.close()
    assert await redis_backend.state.ping()
    assert await redis_backend.state.known_nodes() == []


async def test_an_unreachable_redis_is_a_config_error() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    with pytest.raises(ConfigError) as caught:
        await build_backend(NodeConfig(redis=url))
    assert str(caught.value) == f"--redis: cannot reach {url}: connection refused"
