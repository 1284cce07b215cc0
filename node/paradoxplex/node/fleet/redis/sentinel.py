"""A Redis master found through Sentinel, and followed when it fails over.

Rules:
- ``sentinel_master(url, ...)`` gives a client of the master named by a Sentinel URL
  (``shared.sentinel``) and the ``FleetSentinel`` behind it (close both). redis-py's
  ``SentinelConnectionPool`` asks the sentinels for the master's address on every new
  connection, so every reconnect, the bus's dedicated reader included, goes to the master
  the sentinels name *now*; idle connections to a previous master are dropped.
- A connection that meets ``READONLY`` (its master was demoted) is closed and raises a
  ``ConnectionError``: the caller's reconnect then asks the sentinels again (redis-py's
  ``SentinelManagedConnection`` does this, for pool and reader connections alike).
- Concurrent lookups (every connection that reconnects looks the master up) share the list
  of sentinels: each walks a copy, and the one that answered moves to the front by identity.
- A sentinel that reports its master as down (``is_sdown``/``is_odown``) is not believed: the
  next one is asked. No sentinel naming a healthy master is ``NoMaster``, a ``ConnectionError``
  (so: an outage, retried like one) that says why per sentinel: what failed, which did not
  know the service, which saw its master down (``errors.refused`` words it at start-up). A
  cancel that redis-py turned into a timeout on the way is a cancel again, not the next
  sentinel's turn (else a stopping node would go on opening connections).
- Sentinels get ``socket_timeout`` (also to connect) and the TLS options; their own login
  comes from the URL's ``sentinel_username``/``sentinel_password`` only. A sentinel query is
  retried once at once when its connection broke, never with backoff: the next sentinel is
  the fallback, so finding the master never takes longer than a failover.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from redis.asyncio import Redis
from redis.asyncio.connection import parse_url
from redis.asyncio.sentinel import MasterNotFoundError, Sentinel
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from paradoxplex.node.fleet.redis.retries import redis_retry
from paradoxplex.node.tasks import checkpoint
from paradoxplex.shared.retry import BROKEN_CONNECTION
from paradoxplex.shared.sentinel_url import SentinelUrl, parse_sentinel_url

__all__ = ["FleetSentinel", "NoMaster", "sentinel_master"]

#: Options a sentinel connection shares with the master's (timeouts and TLS).
_SHARED_PREFIXES = ("socket_", "ssl")


class NoMaster(MasterNotFoundError):
    """No sentinel named a healthy master for ``service``: per sentinel (``host:port``), the
    error it gave, or that it does not know the service, or that it sees the master down."""

    def __init__(
        self,
        service: str,
        *,
        failed: tuple[tuple[str, BaseException], ...] = (),
        unknown_at: tuple[str, ...] = (),
        down_at: tuple[str, ...] = (),
    ) -> None:
        self.service = service
        self.failed = failed
        self.unknown_at = unknown_at
        self.down_at = down_at
        super().__init__(self._text())

    def _text(self) -> str:
        parts = [f"{where}: {type(error).__name__}" for where, error in self.failed]
        parts += [f"{where}: unknown service" for where in self.unknown_at]
        parts += [f"{where}: master down" for where in self.down_at]
        return f"no master for {self.service!r} ({'; '.join(parts) or 'no sentinel'})"


class FleetSentinel(Sentinel):
    """redis-py's ``Sentinel``, whose failure to find a master says why (``NoMaster``)."""

    async def discover_master(self, service_name: str) -> tuple[str, int]:
        failed: list[tuple[str, BaseException]] = []
        unknown_at: list[str] = []
        down_at: list[str] = []
        for sentinel in list(self.sentinels):  # a copy: other calls reorder it meanwhile
            where = _where(sentinel)
            try:
                masters = await sentinel.sentinel_masters()
            except (RedisConnectionError, RedisTimeoutError, ResponseError, OSError) as error:
                checkpoint()  # a cancel redis-py turned into a timeout is no sentinel's failure
                failed.append((where, error))
                continue
            state = masters.get(service_name) if isinstance(masters, dict) else None
            if state is None:
                unknown_at.append(where)
            elif not self.check_master_state(state, service_name):
                down_at.append(where)
            else:
                self._ask_first(sentinel)
                return str(state["ip"]), int(state["port"])
        raise NoMaster(
            service_name,
            failed=tuple(failed),
            unknown_at=tuple(unknown_at),
            down_at=tuple(down_at),
        )

    def _ask_first(self, sentinel: Redis) -> None:
        """Move the sentinel that answered to the front, found by identity: redis-py swaps by
        the index it had before its await, and concurrent lookups then duplicate one sentinel
        and drop another from the list (whose connections ``aclose`` then never closes)."""
        index = self.sentinels.index(sentinel)
        self.sentinels[0], self.sentinels[index] = sentinel, self.sentinels[0]


def _where(sentinel: Redis) -> str:
    kwargs = sentinel.connection_pool.connection_kwargs
    return f"{kwargs.get('host')}:{kwargs.get('port')}"


def connection_options(url: SentinelUrl) -> dict[str, Any]:
    """redis-py keyword arguments for the master, from the URL's login and options."""
    query = urlencode([*url.options, ("db", str(url.db))])
    options: dict[str, Any] = dict(parse_url(f"redis://localhost/?{query}"))
    options.update(username=url.username, password=url.password, ssl=url.tls)
    return options


def sentinel_options(url: SentinelUrl, master: dict[str, Any]) -> dict[str, Any]:
    """redis-py keyword arguments for each sentinel: the master's timeouts and TLS, and the
    sentinels' own login."""
    options = {k: v for k, v in master.items() if k.startswith(_SHARED_PREFIXES)}
    options.update(username=url.sentinel_username, password=url.sentinel_password)
    # at once, and once: the next sentinel is the fallback (redis-py's default retries
    # three times with seconds of backoff, per sentinel, per connection: longer than a failover)
    options["retry"] = redis_retry(BROKEN_CONNECTION, on=(RedisConnectionError,))
    return options


def sentinel_master(
    url: str, *, socket_timeout: float, health_check_interval: float
) -> tuple[Redis, FleetSentinel]:
    """The master's client (bytes, short timeouts, one retry when a connection broke) and the
    sentinels it asks (no I/O yet)."""
    parsed = parse_sentinel_url(url)
    options = connection_options(parsed)
    options.setdefault("socket_timeout", socket_timeout)
    options.setdefault("socket_connect_timeout", socket_timeout)
    sentinel = FleetSentinel(
        list(parsed.sentinels), sentinel_kwargs=sentinel_options(parsed, options)
    )
    redis = sentinel.master_for(
        parsed.service,
        **options,
        decode_responses=False,
        health_check_interval=health_check_interval,
        retry=redis_retry(BROKEN_CONNECTION, on=(RedisConnectionError,)),  # see retries.py
    )
    return redis, sentinel
