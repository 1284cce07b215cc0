"""The fleet bus on Redis Streams: how the nodes of a fleet talk, without losing anything
silently.

Streams (names from ``Keys(prefix, buckets=client.buckets)``): ``inbox:{b}:<id>``, one per
node in its node's bucket, for what is sent to that node; ``fleet-stream:{b}``, one copy per
bucket, for broadcasts (every node but the sender) and control (every node, the sender
included): a sender adds to every copy, a node reads the copy of its inbox's bucket, with its
inbox, in one XREAD on one server (on one server there is one bucket, so one copy). All are
capped by an approximate MAXLEN (``inbox_length``, default 1,000 entries; an entry is one
envelope, a batch of replies at most 512 KiB).

Rules:
- The bus is built whole before any node exists (client, prefix, ``is_alive``); ``start``
  gives it the node id, the envelope handler and ``on_reconnect``. It never asks which Redis
  mode its ``FleetClient`` speaks to.
- Receiving is the ``InboxReader``'s job (``inbox``): one watched connection, resumed from the
  last entry processed after any loss; ``connected`` is whether it reads now. Every envelope
  is applied once and in order per sender; a gap that cannot be filled is counted in
  ``stats`` and logged.
- Sending is the ``Outbox``'s job (``outbox``): numbered entries, in call order per
  destination, held through outages of up to ``hold`` seconds (default 10), waiting up to
  ``send_deadline`` (default 5 s) for a node that is not reading yet.
- A failure to reach Redis for longer than ``hold`` raises ``FleetUnavailable``
  (``errors.edge``).
- A hot handoff: ``pause`` stops the reader between two entries and the outbox after its adds
  under way; the ``BusPosition`` carries both to a successor with the same node id, which
  ``start``-s from it: it reads the inbox on from the last entry processed, with every
  sender's ordering, and numbers on under the same epoch. ``close(keep_inbox=True)`` leaves
  the inbox to it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import paradoxplex.node.fleet.redis.entries as entries
from paradoxplex.node.fleet.redis.client import FleetClient
from paradoxplex.node.fleet.redis.inbox import InboxPosition, InboxReader
from paradoxplex.node.fleet.redis.outbox import AliveCheck, Outbox
from paradoxplex.shared.config import DEFAULT_BUS_HOLD
from paradoxplex.shared.fleet import (
    NO_POSITION,
    BusPosition,
    BusStats,
    EnvelopeHandler,
    ReconnectHandler,
)
from paradoxplex.shared.keys import Keys
from paradoxplex.shared.ordering import new_epoch

__all__ = ["AliveCheck", "RedisBus"]

INBOX_LENGTH = 1_000
INBOX_TTL = 60.0
HOLD = DEFAULT_BUS_HOLD  # --bus-hold
TAIL_INTERVAL = 1.0


class RedisBus:
    """The fleet bus on Redis Streams.

    ``is_alive(node_id)`` lets ``send`` stop waiting for a node known to be dead.
    ``send_deadline`` (default 5 s) bounds how long ``send`` waits for a node to read.
    ``hold`` (default 10 s) bounds how long sends wait through a Redis outage.
    ``ping_interval`` (default 1 s): a blocked read returns at least this often, and the
    connection is declared lost after two more intervals of silence. ``max_backoff``
    (default 1 s) caps the wait between reconnection attempts. ``inbox_length`` (default
    1,000) caps each stream (approximately); ``inbox_ttl`` (default 60 s): an inbox nobody
    reads any more expires after it. ``tail_interval`` (default 1 s): how long a destination
    stays idle before it gets a tail marker. ``client`` comes from ``client.connect``; it is
    the caller's to close, unless ``owns_client`` (then ``close`` closes it).

    The handler runs on the reader task, one envelope at a time: keep it quick (hand off to a
    bounded queue). While it runs nothing is read; the inbox keeps what comes meanwhile.
    """

    def __init__(
        self,
        client: FleetClient,
        *,
        prefix: str,
        is_alive: AliveCheck | None = None,
        send_deadline: float = 5.0,
        hold: float = HOLD,
        ping_interval: float = 1.0,
        max_backoff: float = 1.0,
        inbox_length: int = INBOX_LENGTH,
        inbox_ttl: float = INBOX_TTL,
        tail_interval: float = TAIL_INTERVAL,
        owns_client: bool = False,
    ) -> None:
        self.keys = Keys(prefix, buckets=client.buckets)
        self.node_id = ""
        self.client = client
        self._owns_client = owns_client
        self._ping_interval = ping_interval
        self._max_backoff = max_backoff
        self._inbox_length = inbox_length
        self._inbox_ttl = inbox_ttl
        self._outbox = Outbox(
            client,
            inbox_key=self.keys.inbox,
            fleet_streams=self.keys.fleet_streams(),
            inbox_length=inbox_length,
            is_alive=is_alive,
            send_deadline=send_deadline,
            hold=hold,
            tail_interval=tail_interval,
        )
        self._reader: InboxReader | None = None
        self._stats = BusStats()
        self._closed = False

    @property
    def connected(self) -> bool:
        """True while the reader reads (False before ``start`` and after ``close``)."""
        return self._reader is not None and self._reader.connected

    @property
    def stats(self) -> BusStats:
        return self._stats

    @property
    def reconnects(self) -> int:
        return 0 if self._reader is None else self._reader.reconnects

    @property
    def handler_errors(self) -> int:
        return 0 if self._reader is None else self._reader.handler_errors

    @property
    def undelivered(self) -> int:
        return self._outbox.undelivered

    # -- lifecycle -----------------------------------------------------------------------

    async def start(
        self,
        node_id: str,
        handler: EnvelopeHandler,
        *,
        on_reconnect: ReconnectHandler | None = None,
        position: BusPosition = NO_POSITION,
    ) -> None:
        """Make the inbox (raises ``FleetUnavailable`` when Redis does not answer), then read.
        ``on_reconnect()`` is awaited, in a task of its own, after every reconnection:
        re-register what Redis may have lost. From ``position``: read and number on."""
        if self._reader is not None:
            raise RuntimeError("RedisBus already started")
        if not node_id:
            raise ValueError("a node id must not be empty")
        self.node_id = node_id
        reader = InboxReader(
            self.client,
            name=node_id,
            inbox=self.keys.inbox(node_id),
            fleet_stream=self.keys.fleet_stream(self.keys.bucket(node_id)),
            inbox_length=self._inbox_length,
            inbox_ttl=self._inbox_ttl,
            handler=handler,
            stats=self._stats,
            on_reconnect=on_reconnect,
            on_lost=self._outbox.lost,
            ping_interval=self._ping_interval,
            max_backoff=self._max_backoff,
        )
        if position.present:
            await reader.start(
                InboxPosition(
                    position.inbox_last,
                    position.fleet_last,
                    position.since,
                    position.inbox,
                    position.fleet,
                )
            )
            self._reader = reader
            self._outbox.start(node_id, position.epoch, (position.fleet_numbering, *position.peers))
            return
        await reader.start()
        self._reader = reader
        self._outbox.start(node_id, new_epoch(reader.since))

    async def pause(self, settle: Callable[[], Awaitable[None]] | None = None) -> BusPosition:
        """Stop reading (after the entry in hand), await ``settle()``, then stop sending
        (after the adds under way)."""
        if self._reader is None:
            raise RuntimeError("RedisBus not started")
        read = await self._reader.pause()
        if settle is not None:
            await settle()
        numbering = await self._outbox.pause()
        fleet = next((n for n in numbering if not n.node_id), None)
        return BusPosition(
            present=True,
            inbox_last=read.inbox_last,
            fleet_last=read.fleet_last,
            since=read.since,
            inbox=read.inbox,
            fleet=read.fleet,
            epoch=self._outbox.epoch,
            peers=tuple(n for n in numbering if n.node_id),
            fleet_numbering=fleet or NO_POSITION.fleet_numbering,
        )

    async def resume(self) -> None:
        if self._reader is not None:
            await self._reader.resume()
        self._outbox.resume()

    async def close(self, *, keep_inbox: bool = False) -> None:
        if self._closed:
            return
        self._closed = True
        await self._outbox.close()
        if self._reader is not None:
            await self._reader.close()
            if not keep_inbox:
                with contextlib.suppress(Exception):  # Redis gone: it expires by itself
                    await self._reader.delete_inbox()
        if self._owns_client:
            await self.client.close()
        await asyncio.sleep(0)  # let closed transports finish closing

    # -- sending -------------------------------------------------------------------------

    async def send(
        self,
        node_id: str,
        envelope: bytes,
        *,
        count: int = 1,
        on_write: Callable[[], None] | None = None,
    ) -> bool:
        """Deliver to one node; False (counted, logged) when it did not read in time.
        ``on_write()`` is called before each XADD of it (none yet: it never left)."""
        return await self._outbox.send(node_id, envelope, count, on_write)

    async def broadcast(self, envelope: bytes) -> None:
        """Once for every other node (the sender skips its own broadcasts)."""
        await self._outbox.publish(entries.BROADCAST, envelope)

    async def control(self, envelope: bytes) -> None:
        """Once for every node, this one included."""
        await self._outbox.publish(entries.CONTROL, envelope)

    def __repr__(self) -> str:
        return (
            f"<RedisBus node={self.node_id!r} connected={self.connected} "
            f"reconnects={self.reconnects} undelivered={self.undelivered} "
            f"stalled={self._outbox.stalled}>"
        )
