"""The bus's sending end: numbered stream entries, added in order, held through short outages.

Rules:
- One ``_Peer`` per destination stream (a node's inbox, or the fleet stream) numbers what is
  sent there: ``seq`` 1, 2, 3, ... and ``total`` messages so far, under this process's epoch.
  A number is given once: an add whose outcome is unknown is retried with the same number
  (the receiver drops the duplicate). Adds to one destination run one at a time, in call
  order (a FIFO lock): concurrent sends keep their order too.
- Redis unreachable: retry with backoff (``retry.BUS_SEND``, as for an inbox not there yet,
  below), the same number each time, while the outage is younger than ``hold`` seconds;
  after that, fail at once with ``FleetUnavailable`` (the caller counts the drop). An
  envelope given up that way may still have landed: it may then be counted as lost at both
  ends, never at neither.
- An inbox that does not exist (its node is not reading: not started yet, or resuming after
  Redis came back empty) is waited for until ``send_deadline``, or until ``is_alive`` says the
  node is dead, then ``False`` (counted in ``undelivered``, one WARNING per stall). Right after
  an outage, liveness may not be written again yet: for ``send_deadline`` seconds a missing
  liveness key is not taken as death. Once a stall gave up, later envelopes for that node fail
  after one more add each, until one lands.
- ``is_alive`` is also asked at most every ``alive_interval`` before adding to a node's inbox,
  so that a crashed node's inbox (which lingers until it expires) does not swallow replies.
- Tails: a destination that was sent to and then stayed idle for ``tail_interval`` gets one
  tail marker (its last seq and total), and so does every destination after the reader lost
  Redis: a loss at the end of a burst is noticed by the receiver, not only one in the middle.
- A hot handoff: ``pause`` lets the adds under way finish, then holds every later send until
  ``resume``; ``numbering`` is the last number per destination, which a successor process
  ``start``-s from under the same epoch: the receivers see one sender, numbered on.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import paradoxplex.node.fleet.redis.entries as entries
from paradoxplex.node.fleet.redis.client import FleetClient
from paradoxplex.node.fleet.redis.errors import edge
from paradoxplex.node.tasks import all_of
from paradoxplex.shared.errors import FleetUnavailable
from paradoxplex.shared.fleet import Numbering
from paradoxplex.shared.retry import BUS_SEND, Backoff

__all__ = ["AliveCheck", "Outbox"]

log = logging.getLogger("paradoxplex.node.fleet")

AliveCheck = Callable[[str], Awaitable[bool]]


@dataclass(slots=True)
class _Peer:
    """One destination stream: its numbering and who may add to it now."""

    node_id: str  # "" for the fleet stream
    key: str
    copies: list[str] = field(default_factory=list)  # the fleet stream's other buckets
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    seq: int = 0
    total: int = 0
    tailed: int = 0
    sent_at: float = 0.0
    alive_at: float = -math.inf
    gave_up: bool = False


class Outbox:
    """Numbered adds to streams, for one sender (``start`` names it and its epoch)."""

    def __init__(
        self,
        client: FleetClient,
        *,
        inbox_key: Callable[[str], str],
        fleet_streams: list[str],
        inbox_length: int,
        is_alive: AliveCheck | None,
        send_deadline: float,
        hold: float,
        tail_interval: float,
        alive_interval: float = 1.0,
    ) -> None:
        self.undelivered = 0
        self.sender = ""
        self.epoch = 0
        self._redis = client.redis
        self._inbox_key = inbox_key
        self._inbox_length = inbox_length
        self._is_alive = is_alive
        self._send_deadline = send_deadline
        self._hold = hold
        self._tail_interval = tail_interval
        self._alive_interval = alive_interval
        self._peers: dict[str, _Peer] = {}
        self._fleet = _Peer("", fleet_streams[0], copies=fleet_streams[1:])
        self._down_since: float | None = None
        self._recovered_at = -math.inf
        self._tails: asyncio.Task[None] | None = None
        self._open = asyncio.Event()
        self._open.set()

    def start(self, sender: str, epoch: int, numbering: Sequence[Numbering] = ()) -> None:
        """Send as ``sender`` under ``epoch``, from ``numbering`` (a predecessor's, same epoch)
        or from 0."""
        self.sender, self.epoch = sender, epoch
        for each in numbering:
            peer = self._fleet if not each.node_id else self._peer(each.node_id)
            peer.seq, peer.total, peer.tailed = each.seq, each.total, each.seq
        self._start_tails()

    def _start_tails(self) -> None:
        name = f"paradoxplex-bus-{self.sender}-tails"
        self._tails = asyncio.create_task(self._sweep(), name=name)

    async def close(self) -> None:
        if self._tails is not None:
            self._tails.cancel()
            await asyncio.wait({self._tails})
            self._tails = None

    async def pause(self) -> list[Numbering]:
        """Hold every later send; let the adds under way finish; the numbering to go on from."""
        self._open.clear()
        await self.close()
        for peer in (*self._peers.values(), self._fleet):
            async with peer.lock:
                pass
        return self.numbering()

    def resume(self) -> None:
        """Send again (what waited goes, in order)."""
        self._open.set()
        if self._tails is None:
            self._start_tails()

    def numbering(self) -> list[Numbering]:
        return [
            Numbering(peer.node_id, peer.seq, peer.total)
            for peer in (self._fleet, *self._peers.values())
            if peer.seq
        ]

    def _peer(self, node_id: str) -> _Peer:
        peer = self._peers.get(node_id)
        if peer is None:
            peer = self._peers[node_id] = _Peer(node_id, self._inbox_key(node_id))
        return peer

    @property
    def stalled(self) -> int:
        return sum(1 for peer in self._peers.values() if peer.lock.locked() and peer.gave_up)

    # -- outage bookkeeping ---------------------------------------------------------------

    def lost(self) -> None:
        """Redis went away (the reader noticed): hold from now, and tail everything later."""
        now = asyncio.get_running_loop().time()
        if self._down_since is None:
            self._down_since = now
        for peer in (*self._peers.values(), self._fleet):
            peer.tailed = 0

    def _failed(self, now: float) -> bool:
        """An add failed; True while the outage is young enough to keep holding."""
        if self._down_since is None:
            self._down_since = now
        return now - self._down_since <= self._hold

    def _succeeded(self, now: float) -> None:
        if self._down_since is not None:
            self._down_since = None
            self._recovered_at = now

    # -- sending -------------------------------------------------------------------------

    async def send(
        self,
        node_id: str,
        envelope: bytes,
        count: int,
        on_write: Callable[[], None] | None = None,
    ) -> bool:
        if not self._open.is_set():
            await self._open.wait()
        peer = self._peer(node_id)
        async with peer.lock:
            return await self._deliver(peer, entries.DIRECT, envelope, count, on_write)

    async def publish(self, kind: bytes, envelope: bytes) -> None:
        """Add to the fleet stream (broadcast or control); ``FleetUnavailable`` after ``hold``."""
        if not self._open.is_set():
            await self._open.wait()
        async with self._fleet.lock:
            await self._deliver(self._fleet, kind, envelope, 1)

    async def _deliver(
        self,
        peer: _Peer,
        kind: bytes,
        data: bytes,
        count: int,
        on_write: Callable[[], None] | None = None,
    ) -> bool:
        """Add one numbered entry; True once it landed, False when its node is not reading.
        ``on_write()`` just before each XADD."""
        seq, total = peer.seq + 1, peer.total + count
        meta = entries.Meta(kind, self.epoch, seq, total, count, self.sender).encode()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._send_deadline
        backoff = Backoff(BUS_SEND)
        uncertain = False
        reason = ""
        try:
            while True:
                now = loop.time()
                if peer.node_id and await self._dead(peer, now):
                    reason = "the node is dead"
                    break
                if on_write is not None:
                    on_write()
                try:
                    landed = await self._add(peer, meta, data)
                except FleetUnavailable as exc:
                    uncertain = True
                    if not self._failed(loop.time()):
                        raise FleetUnavailable(f"held {self._hold:g} s: {exc.reason}") from exc
                    await asyncio.sleep(backoff.failed())
                    continue
                self._succeeded(loop.time())
                if landed:
                    peer.seq, peer.total, peer.sent_at = seq, total, loop.time()
                    peer.gave_up = False
                    return True
                if peer.gave_up:
                    reason = "an earlier envelope for it was given up"
                    break
                remaining = deadline - loop.time()
                if remaining <= 0:
                    reason = f"nobody listened within {self._send_deadline:g} s"
                    break
                peer.alive_at = -math.inf  # not reading: ask about its liveness again
                await asyncio.sleep(min(backoff.failed(), remaining))
        except BaseException:
            if uncertain:  # it may have landed: its number is used
                peer.seq, peer.total = seq, total
            raise
        if uncertain:
            peer.seq, peer.total = seq, total
        self.undelivered += 1
        level = logging.DEBUG if peer.gave_up else logging.WARNING
        peer.gave_up = True
        log.log(
            level,
            "bus %s: 1 envelope(s) for node %s not delivered: %s",
            self.sender,
            peer.node_id,
            reason,
        )
        return False

    async def _dead(self, peer: _Peer, now: float) -> bool:
        """Whether ``is_alive`` says the node is dead (asked at most every alive_interval;
        not believed right after an outage, nor while Redis does not answer)."""
        if self._is_alive is None or now - peer.alive_at < self._alive_interval:
            return False
        try:
            alive = await self._is_alive(peer.node_id)
        except FleetUnavailable:
            return False
        if alive:
            peer.alive_at = now
            return False
        return now - self._recovered_at > self._send_deadline

    @edge
    async def _add(self, peer: _Peer, meta: bytes, data: bytes) -> bool:
        """XADD (to every copy of the fleet stream at once); False when the destination is a
        node's inbox that does not exist. A copy that failed fails the add: it is retried with
        the same number everywhere, and the copies that had it drop the duplicate."""
        options: tuple[str, ...] = ("NOMKSTREAM",) if peer.node_id else ()
        added = await all_of(
            *(self._xadd(key, options, meta, data) for key in (peer.key, *peer.copies))
        )
        return added[0] is not None

    async def _xadd(self, key: str, options: tuple[str, ...], meta: bytes, data: bytes) -> object:
        return await self._redis.execute_command(  # type: ignore[no-untyped-call]
            "XADD", key, *options, "MAXLEN", "~", self._inbox_length, "*",
            *entries.fields(meta, data),
        )  # fmt: skip

    # -- tails ---------------------------------------------------------------------------

    async def _sweep(self) -> None:
        """Every ``tail_interval``: tail each destination that went idle after sending."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._tail_interval)
            now = loop.time()
            for peer in (*self._peers.values(), self._fleet):
                if peer.seq > peer.tailed and now - peer.sent_at >= self._tail_interval:
                    await self._tail(peer)

    async def _tail(self, peer: _Peer) -> None:
        if peer.lock.locked():
            return  # busy sending: the next sweep will see
        async with peer.lock:
            meta = entries.Meta(
                entries.TAIL, self.epoch, peer.seq, peer.total, 0, self.sender
            ).encode()
            try:
                landed = await self._add(peer, meta, b"")
            except FleetUnavailable:
                return
            if landed:
                peer.tailed = peer.seq
            elif peer.node_id and await self._dead(peer, asyncio.get_running_loop().time()):
                del self._peers[peer.node_id]  # a new incarnation starts from a baseline

    def __repr__(self) -> str:
        return f"<Outbox {self.sender!r} peers={len(self._peers)} undelivered={self.undelivered}>"
