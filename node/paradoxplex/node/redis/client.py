"""Redis clients for the fleet: one table maps a kind of URL to how its client is built.

Rules:
- ``CLIENT_KINDS`` maps a URL scheme to a factory, and ``connect(url)`` is its one reader.
  One server (``redis://``, ``rediss://``, ``unix://``); the master a Sentinel names
  (``redis+sentinel://``, ``rediss+sentinel://``: ``redis.sentinel``, whose connections
  follow a failover). Another Redis mode is another row: ``RedisFleet`` and ``RedisBus`` take
  a ``FleetClient`` and never ask which mode is behind it.
- A ``FleetClient`` answers commands (``redis``) and makes subscriber connections
  (``subscriber()``): fresh ones, of the client's kind, that never reconnect or retry behind the
  caller's back (the bus watches and replaces its own).
- Timeouts are short (``socket_timeout``, default 2 s, also for connecting) and a command is
  retried once, at once, when its connection broke, never after a timeout: a frozen Redis
  fails within ``socket_timeout``. Responses stay bytes.
- Whoever built or was handed a ``FleetClient`` closes it; one can serve a state and a bus.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from paradoxplex.node.redis.sentinel import sentinel_master
from paradoxplex.shared.errors import ConfigError

__all__ = ["CLIENT_KINDS", "FleetClient", "connect", "single_server"]

SOCKET_TIMEOUT = 2.0
HEALTH_CHECK_INTERVAL = 5.0


@dataclass(frozen=True, slots=True)
class FleetClient:
    """What the fleet state and bus need of Redis, whatever its mode."""

    redis: Redis
    subscriber: Callable[[], AbstractConnection]
    #: What else to close with it (a Sentinel's own connections).
    also_close: tuple[Callable[[], Awaitable[None]], ...] = ()

    async def close(self) -> None:
        await self.redis.aclose()
        for close in self.also_close:
            await close()

    def __repr__(self) -> str:
        return f"<FleetClient {self.redis!r}>"


class ClientFactory(Protocol):
    def __call__(
        self, url: str, *, socket_timeout: float, health_check_interval: float
    ) -> FleetClient: ...


def single_server(
    redis: Redis, *, also_close: tuple[Callable[[], Awaitable[None]], ...] = ()
) -> FleetClient:
    """A ``FleetClient`` around a client of one server (injected, or built by ``connect``);
    its subscriber connections copy the client's connection settings (and class: one of a
    Sentinel's master asks the sentinels where the master is whenever it connects)."""
    pool = redis.connection_pool

    def subscriber() -> AbstractConnection:
        options = {
            **pool.connection_kwargs,
            "decode_responses": False,
            "health_check_interval": 0,
            "retry": Retry(NoBackoff(), 0),
        }
        return pool.connection_class(**options)

    return FleetClient(redis, subscriber, also_close)


def _one_server(url: str, *, socket_timeout: float, health_check_interval: float) -> FleetClient:
    redis = Redis.from_url(
        url,
        decode_responses=False,
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_timeout,
        health_check_interval=health_check_interval,
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
    )
    return single_server(redis)


def _sentinel(url: str, *, socket_timeout: float, health_check_interval: float) -> FleetClient:
    redis, sentinel = sentinel_master(
        url, socket_timeout=socket_timeout, health_check_interval=health_check_interval
    )
    return single_server(redis, also_close=(sentinel.aclose,))


#: URL scheme → how a client of that kind is built.
CLIENT_KINDS: dict[str, ClientFactory] = {
    "redis": _one_server,
    "rediss": _one_server,
    "unix": _one_server,
    "redis+sentinel": _sentinel,
    "rediss+sentinel": _sentinel,
}


def connect(
    url: str,
    *,
    socket_timeout: float = SOCKET_TIMEOUT,
    health_check_interval: float = HEALTH_CHECK_INTERVAL,
) -> FleetClient:
    """A client for ``url``, of the kind its scheme names (no I/O: connections open lazily)."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    factory = CLIENT_KINDS.get(scheme)
    if factory is None:
        known = ", ".join(f"{kind}://" for kind in CLIENT_KINDS)
        raise ConfigError("--redis", f"expected a {known} URL, got the kind {scheme!r}")
    return factory(url, socket_timeout=socket_timeout, health_check_interval=health_check_interval)
