"""The bus's receiving end: the node's inbox stream and the fleet stream, read on one watched
connection, applied once and in order per sender, resumed where it stopped after any loss.

Rules:
- One dedicated connection (``FleetClient.subscriber()``: no retries behind our back) runs
  ``XREAD COUNT BLOCK`` on the inbox and the fleet stream, from the last id processed on each.
- Start: a hello entry creates the inbox and marks where reading starts (its id; never
  ``$``, which races); the fleet stream is read from its last entry then. ``since``, the
  hello's time, tells the ordering which senders started after this reader.
- After a loss: reconnect with jittered backoff (``retry.BUS_RECONNECT``, at most
  ``max_backoff``), and go on from the last ids processed. An inbox that is gone (Redis came
  back empty) is made again by a new hello and read from it; senders wait for it meanwhile
  (they add with ``NOMKSTREAM``).
- Each entry goes through the stream's ``Order``: duplicates are dropped, gaps counted in
  ``stats`` and logged once with sender and size, then applied. Own broadcasts are skipped,
  own control envelopes applied. A malformed entry is counted as a handler error and skipped.
- The handler runs here, one envelope at a time; an exception in it is counted and logged.
  While it runs nothing is read (the inbox keeps what comes meanwhile, up to its MAXLEN).
- A blocked XREAD returns every ``ping_interval`` at the latest; no reply within two more
  intervals (time in the handler does not count) means the connection is lost.
- The inbox's expiry (``inbox_ttl``) is renewed about every ``ping_interval``: an inbox that
  nobody reads any more (its node crashed) goes away by itself. ``close`` deletes it.
- A hot handoff: ``pause`` stops reading between two entries (the handler runs without
  yielding, so none is half applied) and says where (``InboxPosition``); a successor
  ``start``-s from there: no hello, the last ids and every sender's ordering carried over.
  ``resume`` reads on in the same process.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio.connection import AbstractConnection
from tenacity import AsyncRetrying, retry_if_exception

import paradoxplex.node.fleet.redis.entries as entries
from paradoxplex.node.fleet.redis.client import SOCKET_TIMEOUT, FleetClient
from paradoxplex.node.fleet.redis.errors import REDIS_DOWN, cancel_requested, reason, unavailable
from paradoxplex.node.tasks import checkpoint
from paradoxplex.shared.fleet import BusStats, EnvelopeHandler, ReconnectHandler
from paradoxplex.shared.ordering import Duplicate, Gap, Order, Position
from paradoxplex.shared.retry import BUS_RECONNECT

__all__ = ["InboxPosition", "InboxReader"]

log = logging.getLogger("paradoxplex.node.fleet")

READ_COUNT = 256


@dataclass(frozen=True, slots=True)
class InboxPosition:
    """Where a reader stopped: the last entry processed on each stream, when it began
    (``since``) and every sender's position on each stream."""

    inbox_last: str
    fleet_last: str
    since: int
    inbox: tuple[Position, ...]
    fleet: tuple[Position, ...]


class InboxReader:
    """Reads ``inbox`` and ``fleet_stream`` as ``name`` until closed."""

    def __init__(
        self,
        client: FleetClient,
        *,
        name: str,
        inbox: str,
        fleet_stream: str,
        inbox_length: int,
        inbox_ttl: float,
        handler: EnvelopeHandler,
        stats: BusStats,
        on_reconnect: ReconnectHandler | None,
        on_lost: Callable[[], None],
        ping_interval: float,
        max_backoff: float,
    ) -> None:
        self.connected = False
        self.reconnects = 0
        self.handler_errors = 0
        self.stats = stats
        self.since = 0
        self._client = client
        self._name = name
        self._inbox = inbox.encode()
        self._fleet = fleet_stream.encode()
        self._inbox_length = inbox_length
        self._ttl_ms = max(1, int(inbox_ttl * 1000))
        self._handler = handler
        self._on_reconnect = on_reconnect
        self._on_lost = on_lost
        self._ping_interval = ping_interval
        self._reconnect = BUS_RECONNECT.capped(max_backoff)
        self._last = {self._inbox: b"0-0", self._fleet: b"0-0"}
        self._orders: dict[bytes, Order] = {}
        self._conn: AbstractConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._reconnect_task: asyncio.Task[None] | None = None

    async def start(self, position: InboxPosition | None = None) -> None:
        """Make the inbox and mark where reading starts (``FleetUnavailable`` when Redis does
        not answer), then read; from ``position`` (a predecessor's): read on from there."""
        if position is not None:
            self._resume_from(position)
        try:
            self._conn = await self._open(first=position is None)
        except REDIS_DOWN as exc:
            raise unavailable(exc) from exc
        self.connected = True
        self._task = asyncio.create_task(self._run(), name=f"paradoxplex-bus-{self._name}")

    def _resume_from(self, position: InboxPosition) -> None:
        self.since = position.since
        self._last = {self._inbox: position.inbox_last.encode(), self._fleet: b"0-0"}
        self._last[self._fleet] = position.fleet_last.encode() or b"0-0"
        self._orders = {
            self._inbox: Order.resumed(list(position.inbox), since=position.since),
            self._fleet: Order.resumed(list(position.fleet), since=position.since),
        }

    async def pause(self) -> InboxPosition:
        """Stop reading after the entry in hand; where it stopped."""
        await self._stop()
        return InboxPosition(
            inbox_last=self._last[self._inbox].decode(),
            fleet_last=self._last[self._fleet].decode(),
            since=self.since,
            inbox=tuple(self._orders[self._inbox].positions()),
            fleet=tuple(self._orders[self._fleet].positions()),
        )

    async def resume(self) -> None:
        """Read again from where ``pause`` stopped (reconnecting if Redis does not answer)."""
        if self._task is not None and not self._task.done():
            return  # not paused
        try:
            self._conn = await self._open(first=False)
            self.connected = True
        except REDIS_DOWN:
            self._conn = None
        self._task = asyncio.create_task(self._run(), name=f"paradoxplex-bus-{self._name}")

    async def close(self) -> None:
        await self._stop()

    async def _stop(self) -> None:
        for task in (self._task, self._reconnect_task):
            if task is not None and not task.done():
                task.cancel()
                await asyncio.wait({task})
        self._task = self._reconnect_task = None
        self.connected = False
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.disconnect()

    # -- connecting ----------------------------------------------------------------------

    async def _call(self, conn: AbstractConnection, *args: Any) -> Any:
        await conn.send_command(*args, check_health=False)
        return await _answer(conn, SOCKET_TIMEOUT)

    async def _hello(self, conn: AbstractConnection) -> bytes:
        inbox_id: bytes = await self._call(
            conn, "XADD", self._inbox, "MAXLEN", "~", self._inbox_length, "*",
            *entries.fields(entries.hello(self._name), b""),
        )  # fmt: skip
        self._last[self._inbox] = inbox_id
        return inbox_id

    async def _open(self, *, first: bool) -> AbstractConnection:
        conn = self._client.holding(self._inbox.decode()).subscriber()
        try:
            async with asyncio.timeout(SOCKET_TIMEOUT * 2):
                await conn.connect()  # type: ignore[no-untyped-call]
                if first:
                    started = await self._hello(conn)
                    self.since = int(started.split(b"-", 1)[0])
                    self._orders = {
                        self._inbox: Order(since=self.since),
                        self._fleet: Order(since=self.since),
                    }
                    newest = await self._call(conn, "XREVRANGE", self._fleet, "+", "-", "COUNT", 1)
                    if newest:
                        self._last[self._fleet] = newest[0][0]
                elif not await self._call(conn, "EXISTS", self._inbox):
                    await self._hello(conn)
                await self._call(conn, "PEXPIRE", self._inbox, self._ttl_ms)
        except BaseException:
            await conn.disconnect(nowait=True)
            raise
        return conn

    async def _reopen(self) -> AbstractConnection:
        retrying = AsyncRetrying(
            wait=self._reconnect.wait,
            stop=self._reconnect.stop,
            retry=retry_if_exception(
                lambda exc: isinstance(exc, REDIS_DOWN) and not cancel_requested()
            ),
        )
        return await retrying(self._open, first=False)

    async def _run(self) -> None:
        """The reader task: read, and on loss reconnect, resume, notify; forever."""
        loop = asyncio.get_running_loop()
        while True:
            conn = self._conn
            if conn is not None:
                try:
                    await self._read(conn)
                except REDIS_DOWN as exc:
                    if cancel_requested():
                        raise asyncio.CancelledError from exc
                    log.warning("bus %s: lost Redis (%s), reconnecting", self._name, reason(exc))
                except Exception:
                    log.exception("bus %s: reader failed, reconnecting", self._name)
                finally:
                    self.connected = False
                    self._conn = None
                    await conn.disconnect()
            self._on_lost()
            checkpoint()
            lost_at = loop.time()
            try:
                self._conn = await self._reopen()
            except Exception:
                if cancel_requested():  # a cancelled connect can surface as an OSError
                    raise asyncio.CancelledError from None
                log.exception("bus %s: cannot reconnect", self._name)
                await asyncio.sleep(self._reconnect.cap)
                continue
            self.connected = True
            self.reconnects += 1
            log.info("bus %s: reading again after %.2f s", self._name, loop.time() - lost_at)
            self._notify_reconnect()

    def _notify_reconnect(self) -> None:
        if self._on_reconnect is None:
            return
        if self._reconnect_task is not None and not self._reconnect_task.done():
            self._reconnect_task.cancel()
        self._reconnect_task = asyncio.create_task(
            self._call_on_reconnect(self._on_reconnect),
            name=f"paradoxplex-bus-{self._name}-reconnect",
        )

    async def _call_on_reconnect(self, callback: Callable[[], Awaitable[None]]) -> None:
        try:
            await callback()
        except Exception:
            log.exception("bus %s: on_reconnect failed", self._name)

    # -- reading -------------------------------------------------------------------------

    async def _read(self, conn: AbstractConnection) -> None:
        """Read until the connection fails or goes silent; raises why."""
        loop = asyncio.get_running_loop()
        block_ms = max(1, int(self._ping_interval * 1000))
        silence = self._ping_interval * 3
        renew_at = loop.time() + self._ping_interval
        inbox, fleet, last = self._inbox, self._fleet, self._last
        while True:
            checkpoint()  # redis-py can swallow a cancel: it resurfaces here
            if loop.time() >= renew_at:
                renew_at = loop.time() + self._ping_interval
                if not await self._call(conn, "PEXPIRE", inbox, self._ttl_ms):
                    await self._hello(conn)  # the inbox was gone: make it again
                    await self._call(conn, "PEXPIRE", inbox, self._ttl_ms)
            await conn.send_command(
                "XREAD", "COUNT", READ_COUNT, "BLOCK", block_ms,
                "STREAMS", inbox, fleet, last[inbox], last[fleet],
                check_health=False,
            )  # fmt: skip
            reply = await _answer(conn, silence)
            if reply is None:
                continue
            for stream, items in reply.items() if isinstance(reply, dict) else reply:
                for entry_id, values in items:
                    last[stream] = entry_id
                    await self._receive(stream, values)

    async def _receive(self, stream: bytes, values: list[bytes]) -> None:
        try:
            meta = entries.Meta.decode(values[1])
            data = values[3]
        except (ValueError, IndexError, UnicodeDecodeError):
            self.handler_errors += 1
            log.warning("bus %s: skipped a malformed stream entry", self._name)
            return
        kind = meta.kind
        if kind == entries.HELLO:
            return
        if meta.sender == self._name and stream == self._fleet:
            if kind == entries.CONTROL:
                await self._apply(data)
            return
        order = self._orders[stream]
        if kind == entries.TAIL:
            gap = order.tail(meta.sender, meta.epoch, meta.seq, meta.total)
            if gap is not None:
                self._count_gap(stream, meta.sender, gap)
            return
        verdict = order.accept(meta.sender, meta.epoch, meta.seq, meta.total, meta.count)
        if isinstance(verdict, Duplicate):
            self.stats.duplicates += 1
            return
        if isinstance(verdict, Gap):
            self._count_gap(stream, meta.sender, verdict)
        await self._apply(data)

    def _count_gap(self, stream: bytes, sender: str, gap: Gap) -> None:
        self.stats.gaps += 1
        self.stats.lost += gap.lost
        where = "inbox" if stream == self._inbox else "fleet stream"
        log.warning(
            "bus %s: %d envelope(s) (%d message(s)) from node %s never arrived (%s): lost",
            self._name,
            gap.missing,
            gap.lost,
            sender,
            where,
        )

    async def _apply(self, data: bytes) -> None:
        try:
            await self._handler(data)
        except Exception:
            self.handler_errors += 1
            log.exception("bus %s: envelope handler failed", self._name)

    async def delete_inbox(self) -> None:
        """Remove the inbox (on a clean stop): later sends to this node see nobody."""
        await self._client.redis.delete(self._inbox)

    def __repr__(self) -> str:
        return (
            f"<InboxReader {self._name!r} connected={self.connected} "
            f"reconnects={self.reconnects} handler_errors={self.handler_errors}>"
        )


async def _answer(conn: AbstractConnection, seconds: float) -> Any:
    """The next reply; the builtin ``TimeoutError`` when none comes within ``seconds``.
    (redis-py's own per-read timeout answers None instead, which a nil reply also is.)"""
    async with asyncio.timeout(seconds):
        return await conn.read_response(timeout=math.inf)
