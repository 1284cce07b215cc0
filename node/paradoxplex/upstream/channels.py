"""Reply channels: one per node incarnation, its replies numbered and kept until the node
takes them, handed to another stream when its own does not come back.

Rules:
- A batch stream whose probe names a reply channel (with ``acks`` on) sends through it: the
  probe is answered with the channel's ``origin`` (this process's, plus an epoch: numbering
  starts over with a new origin); its replies are numbered per channel and kept until the
  node acknowledges them (``ReplyLedger``); a new stream of the same channel sends the kept
  ones again first.
- One stream per channel (one per node and upstream): a new stream of a channel supersedes
  the one it still had (gone on the node's side): what that one had not sent is numbered and
  kept for the new one, and what it took last goes to whichever stream serves its channel
  now.
- A channel without a stream for ``RESEND_AFTER`` seconds (5) hands its kept replies to
  another stream (any node finds the socket), counted in ``rerouted``; with no stream at all
  for ``REPLY_HOLD`` seconds (60) they are dropped, counted in ``lost`` and logged.
- A channel keeps at most ``max_pending`` replies: past it the oldest are no longer kept
  (at-most-once for them, counted in ``unkept``), so a node that cannot acknowledge costs
  bounded memory.
- Once ``MAX_IDLE_CHANNELS`` (256) are known, a new one first forgets the idle ones (no
  stream, nothing kept).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from typing import Protocol

from paradoxplex.shared.dedup import ReplyLedger
from paradoxplex.upstream.outbox import Outbox, Taken
from paradoxplex.wire import upstream_pb2 as pb

log = logging.getLogger("paradoxplex.upstream")

RESEND_AFTER = 5.0
REPLY_HOLD = 60.0
MAX_IDLE_CHANNELS = 256
_epochs = itertools.count(1)


class Sender(Protocol):
    """What a channel needs of the stream that sends its replies (a ``BatchStream``)."""

    channel: Channel | None
    superseded: bool
    draining: bool
    outbox: Outbox
    consumer: asyncio.Task[None] | None


class Channel:
    """One node incarnation's replies: numbered, kept until taken; its current stream."""

    __slots__ = ("id", "ledger", "lonely_since", "origin", "stream")

    def __init__(self, channel_id: str, origin: str) -> None:
        self.id = channel_id
        self.origin = f"{origin}.{next(_epochs)}"  # numbering starts over with a new origin
        self.ledger: ReplyLedger[pb.OutputStreamRequest] = ReplyLedger()
        self.stream: Sender | None = None
        self.lonely_since = 0.0

    def __repr__(self) -> str:
        return f"<Channel {self.id} {self.ledger!r} stream={self.stream is not None}>"


class ReplyChannels:
    """The reply channels of one server, by channel id (see the module's rules)."""

    def __init__(self, origin: str, *, max_pending: int) -> None:
        self.origin = origin
        self.max_pending = max_pending
        self.rerouted = 0
        self.lost = 0
        self.unkept = 0
        self._channels: dict[str, Channel] = {}

    def attach(self, channel_id: str, stream: Sender) -> Channel:
        """The channel a new stream of ``channel_id`` sends through; a stream it still had
        is gone on the node's side (one stream per node and upstream): superseded."""
        channel = self._channels.get(channel_id)
        if channel is None:
            self._forget_idle_channels()
            channel = self._channels[channel_id] = Channel(channel_id, self.origin)
        old = channel.stream
        if old is not None and old is not stream:
            old.superseded = True
            old.channel = None
            channel.ledger.number(old.outbox.items)
            old.outbox.items = []
            if old.consumer is not None:
                old.consumer.cancel()
            old.outbox.kick()
        channel.stream = stream
        return channel

    def number(self, channel: Channel, items: list[pb.OutputStreamRequest]) -> int:
        """Number ``items`` on ``channel`` and keep them (at most ``max_pending`` kept); the
        first one's number."""
        first = channel.ledger.number(items)
        self.unkept += channel.ledger.trim(self.max_pending)
        return first

    def pass_on(self, old: Sender, taken: Taken) -> None:
        """A superseded stream's last replies go to whatever stream serves its channel now."""
        for channel in self._channels.values():
            if channel.stream is not None and channel.stream is not old and taken.items:
                if channel.stream.superseded:
                    continue
                channel.stream.outbox.items.extend(taken.items)
                channel.stream.outbox.kick()
                return

    def detach(self, stream: Sender) -> None:
        """``stream`` ended: what it had not sent is kept for its channel's next stream."""
        channel = stream.channel
        if channel is None or channel.stream is not stream:
            return
        channel.stream = None
        channel.ledger.number(stream.outbox.items)  # taken by nobody yet: kept for the next
        stream.outbox.items = []
        if len(channel.ledger):
            channel.lonely_since = time.monotonic()
            asyncio.get_running_loop().call_later(RESEND_AFTER, self._orphaned, channel)

    def _orphaned(self, channel: Channel) -> None:
        """A channel's stream did not come back: its kept replies go through another stream,
        or, after ``REPLY_HOLD`` with none, are dropped (counted, logged)."""
        if channel.stream is not None or not len(channel.ledger):
            return
        ledger = channel.ledger
        target = next(
            (
                other.stream
                for other in self._channels.values()
                if other.stream is not None
                and other.stream.channel is not None
                and not other.stream.draining
            ),
            None,
        )
        count = len(ledger)
        if target is None:
            if time.monotonic() - channel.lonely_since < REPLY_HOLD:
                asyncio.get_running_loop().call_later(RESEND_AFTER, self._orphaned, channel)
                return
            ledger.acked(ledger.next - 1)
            self.lost += count
            log.warning(
                "dropped %d replies for node %s: no stream to any node for %.0fs",
                count,
                channel.id,
                REPLY_HOLD,
            )
            return
        replies = [item for _, items in ledger.unacked() for item in items]
        ledger.acked(ledger.next - 1)
        target.outbox.items.extend(replies)
        target.outbox.kick()
        self.rerouted += count
        log.info(
            "%d replies kept for node %s sent through node %s instead",
            count,
            channel.id,
            target.channel.id if target.channel else "?",
        )

    def _forget_idle_channels(self) -> None:
        if len(self._channels) < MAX_IDLE_CHANNELS:
            return
        for channel_id, channel in list(self._channels.items()):
            if channel.stream is None and not len(channel.ledger):
                del self._channels[channel_id]

    def __repr__(self) -> str:
        return (
            f"<ReplyChannels channels={len(self._channels)} rerouted={self.rerouted} "
            f"lost={self.lost} unkept={self.unkept}>"
        )
