"""Redis clients for the fleet: one table maps a kind of URL to how its client is built.

Rules:
- ``CLIENT_KINDS`` maps a URL scheme to a factory, and ``connect(url)`` is its one reader.
  One server (``redis://``, ``rediss://``, ``unix://``); the master a Sentinel names
  (``redis+sentinel://``, ``rediss+sentinel://``: ``redis.sentinel``, whose connections
  follow a failover). Another Redis mode is another row: ``RedisFleet`` and ``RedisBus`` take
  a ``FleetClient`` and never ask which mode is behind it. Several URLs, comma-separated, are
  shards (``shards``): each is built by its own row, and ``sharded`` puts them together.
- A ``FleetClient`` answers commands (``redis``) and makes subscriber connections
  (``subscriber()``): fresh ones, of the client's kind, that never reconnect or retry behind the
  caller's back (the bus watches and replaces its own).
- Timeouts are short (``socket_timeout``, default 2 s, also for connecting) and a command is
  retried once, at once, when its connection broke (``retry.BROKEN_CONNECTION``, which
  redis-py runs: ``retries.py``), never after a timeout: a frozen Redis fails within
  ``socket_timeout``. Responses stay bytes.
- Whoever built or was handed a ``FleetClient`` closes it; one can serve a state and a bus.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, cast

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError

from paradoxplex.node.fleet.redis.cluster import cluster_of, reader_of
from paradoxplex.node.fleet.redis.retries import redis_retry
from paradoxplex.node.fleet.redis.sentinel import sentinel_master
from paradoxplex.node.fleet.redis.shards import ShardedRedis
from paradoxplex.shared.errors import ConfigError
from paradoxplex.shared.placement import CLUSTER_BUCKETS, FLEET_TAG, split_urls
from paradoxplex.shared.retry import BROKEN_CONNECTION, NO_RETRY

__all__ = ["CLIENT_KINDS", "FleetClient", "connect", "sharded", "single_server"]

SOCKET_TIMEOUT = 2.0
HEALTH_CHECK_INTERVAL = 5.0


@dataclass(frozen=True, slots=True)
class FleetClient:
    """What the fleet state and bus need of Redis, whatever its mode.

    ``buckets`` is how many buckets the fleet's keys fall in (``shared.placement``): 1 for one
    server. ``holder`` (absent for one server) gives the client of the server that holds a key
    now: the inbox reader's dedicated connection goes there. ``parts`` are the shards, each a
    client of its own kind, when the client spreads keys over several.
    """

    redis: Redis
    subscriber: Callable[[], AbstractConnection]
    buckets: int = 1
    holder: Callable[[str], FleetClient] | None = None
    parts: tuple[FleetClient, ...] = ()

    def holding(self, key: str) -> FleetClient:
        """The client whose ``subscriber()`` connects to the server holding ``key``."""
        return self if self.holder is None else self.holder(key)

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
            "retry": redis_retry(NO_RETRY),  # the bus replaces a reader that broke
        }
        return pool.connection_class(**options)

    return FleetClient(redis, subscriber, also_close=also_close)


def _one_server(url: str, *, socket_timeout: float, health_check_interval: float) -> FleetClient:
    redis = Redis.from_url(
        url,
        decode_responses=False,
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_timeout,
        health_check_interval=health_check_interval,
        # inside redis-py: a new pooled connection for the same command (see retries.py)
        retry=redis_retry(BROKEN_CONNECTION, on=(RedisConnectionError,)),
    )
    return single_server(redis)


def _sentinel(url: str, *, socket_timeout: float, health_check_interval: float) -> FleetClient:
    redis, sentinel = sentinel_master(
        url, socket_timeout=socket_timeout, health_check_interval=health_check_interval
    )
    return single_server(redis, also_close=(sentinel.aclose,))


def _cluster(url: str, *, socket_timeout: float, health_check_interval: float) -> FleetClient:
    """Redis Cluster (``redis.cluster``): commands routed by the cluster client; the reader
    connects to the master of its inbox's slot, looked up anew at each connect."""
    cluster = cluster_of(
        url, socket_timeout=socket_timeout, health_check_interval=health_check_interval
    )
    redis = cast(Redis, cluster)  # duck-typed: the same commands, pipelines, scripts, by key

    def holder(key: str) -> FleetClient:
        return FleetClient(redis, lambda: reader_of(cluster, key), buckets=CLUSTER_BUCKETS)

    fleet_wide = f"{{{FLEET_TAG}}}"
    return FleetClient(
        redis, lambda: reader_of(cluster, fleet_wide), buckets=CLUSTER_BUCKETS, holder=holder
    )


#: URL scheme → how a client of that kind is built.
CLIENT_KINDS: dict[str, ClientFactory] = {
    "redis": _one_server,
    "rediss": _one_server,
    "unix": _one_server,
    "redis+sentinel": _sentinel,
    "rediss+sentinel": _sentinel,
    "redis+cluster": _cluster,
}


def sharded(parts: Sequence[FleetClient]) -> FleetClient:
    """One ``FleetClient`` over several shards, in the order given (``shards``)."""
    redis = ShardedRedis([part.redis for part in parts])

    def holder(key: str) -> FleetClient:
        return parts[redis.shard_for(key)]

    return FleetClient(
        cast(Redis, redis),  # duck-typed: the commands the fleet uses, routed by key
        parts[0].subscriber,
        buckets=len(parts),
        holder=holder,
        parts=tuple(parts),
    )


def connect(
    url: str,
    *,
    socket_timeout: float = SOCKET_TIMEOUT,
    health_check_interval: float = HEALTH_CHECK_INTERVAL,
) -> FleetClient:
    """A client for ``url``, of the kind its scheme names (no I/O: connections open lazily);
    several comma-separated URLs are shards, each a client of its own kind (``sharded``)."""
    urls = split_urls(url)
    if len(urls) > 1:
        return sharded(
            [
                _one_kind(one, socket_timeout=socket_timeout, health=health_check_interval)
                for one in urls
            ]
        )
    return _one_kind(url, socket_timeout=socket_timeout, health=health_check_interval)


def _one_kind(url: str, *, socket_timeout: float, health: float) -> FleetClient:
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    factory = CLIENT_KINDS.get(scheme)
    if factory is None:
        known = ", ".join(f"{kind}://" for kind in CLIENT_KINDS)
        raise ConfigError("--redis", f"expected a {known} URL, got the kind {scheme!r}")
    return factory(url, socket_timeout=socket_timeout, health_check_interval=health)
