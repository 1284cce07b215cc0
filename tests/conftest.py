"""Fixtures shared by every test layer.

- ``redis_server``: one real redis-server for the whole session, started on first use only.
- ``redis_url`` and ``key_prefix``: each test gets its own prefix; nothing is ever flushed.
- ``fleet_state``: a started ``FleetState``, once in memory and once on Redis (contract tests).
- ``redis_fleet`` / ``memory_fleet``: one implementation, started.
- ``secured_redis`` / ``replica_redis``: servers that refuse a node (a password, ACL users,
  a read-only replica; ``tests.support.secured_redis``), one each per session, on first use.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from paradoxplex.node.redis import RedisFleet
from paradoxplex.shared.fleet import FleetState, MemoryFleet
from tests.support.redis_server import RedisServer
from tests.support.secured_redis import replica_of, secured


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Tests run on uvloop, as ``paradoxplex node`` does (its transports differ from asyncio's)."""
    import uvloop

    return {"uvloop": uvloop.new_event_loop}


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


@pytest.fixture
def key_prefix(request: pytest.FixtureRequest) -> str:
    """A prefix of this test's own: readable, unique, and free of glob characters."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name)[:40]
    return f"pxtest:{name}:{uuid.uuid4().hex[:8]}"


async def delete_prefix(url: str, prefix: str) -> None:
    """Remove one test's keys (the session's Redis is shared: never FLUSHALL)."""
    client = Redis.from_url(url)
    try:
        doomed = [key async for key in client.scan_iter(match=f"{prefix}:*", count=500)]
        if doomed:
            await client.delete(*doomed)
    finally:
        await client.aclose()


@pytest_asyncio.fixture
async def redis_fleet(redis_url: str, key_prefix: str) -> AsyncIterator[RedisFleet]:
    fleet = RedisFleet.from_url(redis_url, prefix=key_prefix)
    await fleet.start()
    try:
        yield fleet
    finally:
        await fleet.close()
        await delete_prefix(redis_url, key_prefix)


@pytest_asyncio.fixture
async def memory_fleet() -> AsyncIterator[MemoryFleet]:
    fleet = MemoryFleet()
    await fleet.start()
    try:
        yield fleet
    finally:
        await fleet.close()


@pytest.fixture(params=["memory", "redis"])
def fleet_state(request: pytest.FixtureRequest) -> FleetState:
    """The same contract, run over each implementation (Redis is started only when needed)."""
    fleet: FleetState = request.getfixturevalue(f"{request.param}_fleet")
    return fleet
