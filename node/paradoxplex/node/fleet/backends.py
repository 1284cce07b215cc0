"""The fleet backend, chosen once: one table from a backend name to its builder.

Rules:
- ``BACKENDS`` maps ``"memory"`` and ``"redis"`` to a builder; ``backend_name`` picks
  ``"redis"`` when the config names a Redis URL, ``"memory"`` otherwise.
- A builder returns a ``Backend`` whose state and bus are whole before any node exists: the
  node starts and closes them and never swaps one in afterwards.
- memory: one ``MemoryHub`` behind the state and the bus.
- redis: one ``FleetClient`` (its kind from the URL, ``redis.CLIENT_KINDS``) behind the state
  and the bus; the state owns it (the node closes the bus first, the state last). The bus asks
  the state whether a silent node is alive. Before either exists, ``redis.probe`` checks that
  this Redis, as this user, lets a node do its work under the key prefix: a Redis that does
  not answer, refuses the password, is a read-only replica or whose ACL denies a command, key
  or channel is one ``ConfigError`` saying which, the URL redacted: one line, no node.
  Sharded (several URLs), every shard is probed, and the list must be the fleet's
  (``shards.check_list``).
- The password comes from the URL, or from ``redis_password_file`` (which replaces the URL's).
- ``starting(config)`` wraps the rest of start-up: a Redis error there is a ``ConfigError``
  too, worded the same way (no traceback, whatever step met it).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace

from redis.exceptions import RedisError

from paradoxplex.node.fleet.memory import memory_backend
from paradoxplex.node.fleet.redis import FleetClient, RedisBus, RedisFleet, connect
from paradoxplex.node.fleet.redis.client import SOCKET_TIMEOUT
from paradoxplex.node.fleet.redis.errors import REDIS_DOWN, Target, refused
from paradoxplex.node.fleet.redis.preflight import probe
from paradoxplex.node.fleet.redis.shards import check_list
from paradoxplex.shared.config import NodeConfig
from paradoxplex.shared.credentials import read_password, with_password
from paradoxplex.shared.errors import ConfigError, FleetUnavailable
from paradoxplex.shared.fleet import Backend
from paradoxplex.shared.placement import split_urls

__all__ = ["BACKENDS", "backend_name", "build_backend", "starting"]

BackendBuilder = Callable[[NodeConfig], Awaitable[Backend]]


async def _memory(config: NodeConfig) -> Backend:
    return memory_backend()


def target(config: NodeConfig) -> Target:
    """What start-up messages about ``config``'s Redis name."""
    assert config.redis is not None
    setting = "--redis-password-file" if config.redis_password_file else "--redis"
    return Target(config.redis, config.key_prefix, setting, SOCKET_TIMEOUT)


def login_url(config: NodeConfig) -> str:
    """The URL the client connects with: the password file's password, if any, put in."""
    assert config.redis is not None
    if not config.redis_password_file:
        return config.redis
    key = "--redis-password-file"
    return with_password(config.redis, read_password(key, config.redis_password_file))


async def _redis(config: NodeConfig) -> Backend:
    url = login_url(config)
    client = connect(url, socket_timeout=SOCKET_TIMEOUT)
    try:
        await _check(client, url, config)
    except BaseException:
        await client.close()
        raise
    state = RedisFleet(client, prefix=config.key_prefix, owns_client=True)
    bus = RedisBus(
        client, prefix=config.key_prefix, is_alive=state.node_alive, hold=config.bus_hold
    )
    return Backend(state, bus)


async def _check(client: FleetClient, url: str, config: NodeConfig) -> None:
    """The probe, on every shard; then, when sharded, that this node has the fleet's list."""
    if not client.parts:
        await probe(client, prefix=config.key_prefix, target=target(config))
        return
    urls = split_urls(url)
    setting = target(config)
    for part, one in zip(client.parts, urls, strict=True):
        await probe(part, prefix=config.key_prefix, target=replace(setting, url=one))
    try:
        await check_list([part.redis for part in client.parts], urls, prefix=config.key_prefix)
    except RedisError as error:
        raise refused(error, setting) from None


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


@contextlib.asynccontextmanager
async def starting(config: NodeConfig) -> AsyncIterator[None]:
    """Around a node's start-up: a Redis error in it becomes the ``ConfigError`` saying why."""
    try:
        yield
    except FleetUnavailable as error:
        if config.redis is None:
            raise
        cause = error.__cause__
        if isinstance(cause, REDIS_DOWN):
            raise refused(cause, target(config)) from None
        raise ConfigError("--redis", error.reason) from None
    except RedisError as error:  # not OSError: a listener's "address in use" is no Redis error
        if config.redis is None:
            raise
        raise refused(error, target(config)) from None
