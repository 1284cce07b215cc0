"""Which new sockets a node serves: its own limit and per-source limits, decided without I/O.

Rules:
- A source is a client's address: an IPv4 address as it is, an IPv6 address by the /64 it is
  in (one client commonly holds a whole /64). Anything else (a Unix socket, an unknown peer)
  is its own source.
- A new socket is refused, first reason first: the node is draining (``draining``); the node
  holds ``max_total`` sockets (``max_connections``); the node holds as many sockets as its
  open-file limit leaves room for (``fd_limit``: ``socket_room``); its source holds
  ``max_per_source`` sockets (``per_ip``; 0: off); its source has no token left
  (``accept_rate``; 0: off).
- Open files: a node keeps ``fd_reserve(limit)`` descriptors for itself (listener, admin API,
  Redis, gRPC channels, logs, the event loop, sockets still in a TLS handshake or PROXY
  header) and holds sockets only in the rest, so that ``accept()`` never meets the limit.
- Accept rate: a token bucket per source, ``rate`` tokens a second, holding at most ``burst``
  (default one second's worth, at least 1); an admitted socket takes one token, a refused one
  takes none.
- Memory: a source is remembered while it holds sockets, while its bucket is not full again
  and while a refusal of it was logged within ``log_interval``; the rest is forgotten in
  sweeps that run when the tables have doubled since the last one.
- Refusals are said at most once per ``log_interval`` per source: ``refused`` answers how many
  happened since it last said so (0: stay quiet this time).
"""

from __future__ import annotations

import enum
import functools
import ipaddress
from dataclasses import dataclass

SWEEP_FLOOR = 1024
DEFAULT_MAX_TOTAL = 10_000  # --max-connections
#: Open files a node keeps for itself beside its sockets, plus 1 % of the limit (at most
#: ``FD_RESERVE_EXTRA``): a node with Redis, two upstreams and its admin API holds about 30.
FD_RESERVE = 128
FD_RESERVE_EXTRA = 1024


class Refusal(enum.StrEnum):
    """Why a socket was refused; the value is the metric label."""

    DRAINING = "draining"
    MAX_CONNECTIONS = "max_connections"
    PER_IP = "per_ip"
    ACCEPT_RATE = "accept_rate"
    FD_LIMIT = "fd_limit"


def fd_reserve(limit: int) -> int:
    """Open files kept for the node itself when its limit is ``limit``."""
    return FD_RESERVE + min(limit // 100, FD_RESERVE_EXTRA)


def socket_room(limit: int) -> int:
    """Sockets a node can hold under an open-file limit of ``limit``."""
    return max(0, limit - fd_reserve(limit))


def fd_shortfall(max_connections: int, limit: int) -> str | None:
    """One line saying that ``limit`` open files cannot hold ``max_connections`` sockets and
    the node's own files; None when they can."""
    room = socket_room(limit)
    if max_connections <= room:
        return None
    return (
        f"the open-file limit ({limit}) is below --max-connections ({max_connections}) plus "
        f"{fd_reserve(limit)} for the node itself: sockets past {room} will be refused "
        "(fd_limit); raise the hard limit (LimitNOFILE= in systemd, ulimit -Hn, "
        "the container runtime's nofile)"
    )


@functools.lru_cache(maxsize=4096)  # parsing an address costs more than the rest of an accept
def source_of(host: str) -> str:
    """The source a peer address counts against: IPv4 as is, IPv6 by its /64."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv4Address):
        return str(address)
    mapped = address.ipv4_mapped
    if mapped is not None:
        return str(mapped)
    return str(ipaddress.IPv6Network((address, 64), strict=False))


@dataclass(slots=True)
class Bucket:
    tokens: float
    at: float


class Admission:
    """Admits or refuses new sockets. Defaults: ``max_total`` 10,000, ``fd_room`` None (no
    open-file bound), per-source limits off, ``log_interval`` 10 s."""

    __slots__ = (
        "_buckets",
        "_held",
        "_refusals",
        "_said",
        "_sweep_at",
        "burst",
        "fd_room",
        "log_interval",
        "max_per_source",
        "max_total",
        "rate",
    )

    def __init__(
        self,
        *,
        max_total: int = DEFAULT_MAX_TOTAL,
        fd_room: int | None = None,
        max_per_source: int = 0,
        rate: float = 0.0,
        burst: float | None = None,
        log_interval: float = 10.0,
    ) -> None:
        self.max_total = max_total
        self.fd_room = fd_room
        self.max_per_source = max_per_source
        self.rate = rate
        self.burst = max(1.0, rate if burst is None else burst)
        self.log_interval = log_interval
        self._held: dict[str, int] = {}
        self._buckets: dict[str, Bucket] = {}
        self._said: dict[str, float] = {}  # source -> when a refusal of it was last logged
        self._refusals: dict[str, int] = {}  # refusals since then
        self._sweep_at = SWEEP_FLOOR

    def admit(
        self, source: str, now: float, *, held: int, draining: bool = False
    ) -> Refusal | None:
        """None: serve it (the source now holds one more socket; ``release`` it on close)."""
        if draining:
            return Refusal.DRAINING
        if held >= self.max_total:
            return Refusal.MAX_CONNECTIONS
        if self.fd_room is not None and held >= self.fd_room:
            return Refusal.FD_LIMIT
        count = self._held.get(source, 0)
        if self.max_per_source and count >= self.max_per_source:
            return Refusal.PER_IP
        if self.rate and not self._take(source, now):
            return Refusal.ACCEPT_RATE
        self._held[source] = count + 1
        return None

    def adopt(self, source: str) -> None:
        """A socket another process admitted is held here now (a hot handoff): counted for
        ``source`` like an admitted one, whatever the limits say (it is not new)."""
        self._held[source] = self._held.get(source, 0) + 1

    def release(self, source: str) -> None:
        """A socket of ``source`` that was admitted is gone."""
        count = self._held.get(source, 0)
        if count > 1:
            self._held[source] = count - 1
        else:
            self._held.pop(source, None)

    def held_by(self, source: str) -> int:
        return self._held.get(source, 0)

    def _take(self, source: str, now: float) -> bool:
        bucket = self._buckets.get(source)
        if bucket is None:
            if len(self._buckets) >= self._sweep_at:
                self._sweep(now)
            bucket = self._buckets[source] = Bucket(self.burst, now)
        else:
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.rate)
            bucket.at = now
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True

    def refused(self, source: str, now: float) -> int:
        """A socket of ``source`` was refused: how many were since the last log line about it,
        when one is due now; else 0."""
        count = self._refusals.get(source, 0) + 1
        said = self._said.get(source)
        if said is not None and now - said < self.log_interval:
            self._refusals[source] = count
            return 0
        if said is None and len(self._said) >= self._sweep_at:
            self._sweep(now)
        self._said[source] = now
        self._refusals.pop(source, None)
        return count

    def _sweep(self, now: float) -> None:
        """Forget full buckets and log marks older than the interval."""
        rate, burst = self.rate, self.burst
        self._buckets = {
            source: bucket
            for source, bucket in self._buckets.items()
            if bucket.tokens + (now - bucket.at) * rate < burst
        }
        self._said = {s: t for s, t in self._said.items() if now - t < self.log_interval}
        self._refusals = {s: n for s, n in self._refusals.items() if s in self._said}
        self._sweep_at = max(SWEEP_FLOOR, 2 * max(len(self._buckets), len(self._said)))

    def __repr__(self) -> str:
        return (
            f"<Admission sources={len(self._held)} buckets={len(self._buckets)} "
            f"max_per_source={self.max_per_source} rate={self.rate:g}>"
        )
