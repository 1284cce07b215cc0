"""Fixtures shared by every test layer.

- ``redis_server``: one real redis-server for the whole session, started on first use only.
- ``redis_url`` and ``key_prefix``: each test gets its own prefix; nothing is ever flushed.
- ``fleet_state``: a started ``FleetState``, once in memory and once on Redis (contract tests).
- ``redis_fleet`` / ``memory_fleet`` / ``shards_fleet`` / ``cluster_fleet``: one
  implementation, started.
- ``redis_shards`` / ``shards_url``: three independent servers (the session's first), one
  comma-separated URL list, for a sharded fleet; started on first use.
- ``redis_cluster`` / ``cluster_url``: a Redis Cluster of three masters (no replicas), one
  ``redis+cluster://`` seed list, for a fleet on Cluster; started on first use.
- ``secured_redis`` / ``replica_redis``: servers that refuse a node (a password, ACL users,
  a read-only replica; ``tests.support.secured_redis``), one each per session, on first use.
- Each test module has an event loop of its own (pyproject's ``asyncio_default_*_loop_scope``),
  and what it leaves on it (an open transport or server, a running task, an unclosed client
  found by the collector) is closed before that loop closes and fails the module's last test,
  naming it (``_module_leftovers``, ``tests.support.leftovers``), never another module.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from paradoxplex.node.fleet.memory import MemoryFleet
from paradoxplex.node.fleet.redis import RedisFleet, connect
from paradoxplex.shared.fleet import FleetState
from paradoxplex.shared.placement import split_urls
from tests.support.leftovers import close_leftovers
from tests.support.redis_cluster import ClusterServers
from tests.support.redis_server import RedisServer
from tests.support.secured_redis import replica_of, secured
from tests.support.state import redis_state


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Tests run on uvloop, as ``paradoxplex node`` does (its transports differ from asyncio's)."""
    import uvloop

    return {"uvloop": uvloop.new_event_loop}


@pytest_asyncio.fixture(scope="module", loop_scope="module", autouse=True)
async def _module_leftovers(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """After a module's last test, while its loop still runs: close what it left and fail it."""
    yield
    left = await close_leftovers()
    if left:
        lines = "\n  ".join(left)
        pytest.fail(f"{request.module.__name__} left behind (now closed):\n  {lines}")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def secured_redis() -> Iterator[RedisServer]:
    with secured() as server:
        yield server


@pytest.fixture(scope="session")
def replica_redis(secured_redis: RedisServer) -> Iterator[RedisServer]:
    with replica_of(secured_redis) as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture(scope="session")
def redis_shards(redis_server: RedisServer) -> Iterator[list[RedisServer]]:
    others = [RedisServer().start() for _ in range(2)]
    try:
        yield [redis_server, *others]
    finally:
        for server in others:
            server.close()


@pytest.fixture
def shards_url(redis_shards: list[RedisServer]) -> str:
    return ",".join(server.url for server in redis_shards)


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[ClusterServers]:
    with ClusterServers(masters=3) as cluster:
        yield cluster


@pytest.fixture
def cluster_url(redis_cluster: ClusterServers) -> str:
    return redis_cluster.url


@pytest.fixture
def key_prefix(request: pytest.FixtureRequest) -> str:
    """A prefix of this test's own: readable, unique, and free of glob characters."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name)[:40]
    return f"pxtest:{name}:{uuid.uuid4().hex[:8]}"


async def delete_prefix(url: str, prefix: str) -> None:
    """Remove one test's keys (the session's Redis is shared: never FLUSHALL); ``url`` may be
    a list of shards or a cluster."""
    for one in split_urls(url):
        client = connect(one).redis if one.startswith("redis+cluster://") else Redis.from_url(one)
        try:
            doomed = [key async for key in client.scan_iter(match=f"{prefix}:*", count=500)]
            for key in doomed:  # one by one: on a cluster each key may live elsewhere
                await client.delete(key)
        finally:
            await client.aclose()


@contextlib.asynccontextmanager
async def started_fleet(url: str, prefix: str) -> AsyncIterator[RedisFleet]:
    """A started ``RedisFleet`` on ``url`` (one server or shards); its keys deleted after."""
    fleet = redis_state(url, prefix=prefix)
    await fleet.start()
    try:
        yield fleet
    finally:
        await fleet.close()
        await delete_prefix(url, prefix)


@pytest_asyncio.fixture
async def redis_fleet(redis_url: str, key_prefix: str) -> AsyncIterator[RedisFleet]:
    async with started_fleet(redis_url, key_prefix) as fleet:
        yield fleet


@pytest_asyncio.fixture
async def memory_fleet() -> AsyncIterator[MemoryFleet]:
    fleet = MemoryFleet()
    await fleet.start()
    try:
        yield fleet
    finally:
        await fleet.close()


@pytest_asyncio.fixture
async def shards_fleet(shards_url: str, key_prefix: str) -> AsyncIterator[RedisFleet]:
    async with started_fleet(shards_url, key_prefix) as fleet:
        yield fleet


@pytest_asyncio.fixture
async def cluster_fleet(cluster_url: str, key_prefix: str) -> AsyncIterator[RedisFleet]:
    async with started_fleet(cluster_url, key_prefix) as fleet:
        yield fleet


@pytest.fixture(params=["memory", "redis", "shards", "cluster"])
def fleet_state(request: pytest.FixtureRequest) -> FleetState:
    """The same contract, run over each implementation (Redis is started only when needed)."""
    fleet: FleetState = request.getfixturevalue(f"{request.param}_fleet")
    return fleet
