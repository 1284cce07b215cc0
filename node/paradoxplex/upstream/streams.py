"""A server's data streams: one ``batchStreaming`` call (numbered, acknowledged, de-duplicated)
or one ``bidirectionalStreaming`` call (the original: none of that).

Rules:
- Handlers run one at a time per stream, in the order the messages arrived; a stream's
  replies wait in its ``Outbox`` (bounded: a full one holds the next message back).
- Acknowledged delivery (a batch stream): numbered messages are acknowledged as the
  ``Outbox`` says; a redelivery (``attempt`` > 1) of an id the server finished within its
  window (``UpstreamServer.finished_before``) is acknowledged without running the handler
  and counted (``duplicates``, reported to the node). A stream keeps the ids it finished
  (``recent``, at most the window's ``max_ids``) while it lives; the server's window takes
  them when it ends.
- Replies go back in batches of at most the server's ``limits`` (a larger reply alone); with
  a reply channel (``channels.py``) they are numbered first (``first_reply``), and a probe
  is answered with the channel's origin, then the channel's kept replies.
- Draining a batch stream (the server's drain, or the node's ``drain`` of this stream): the
  node is told (``draining``), no new handler starts, the running one finishes, its replies
  and acknowledgements go out, the node's ``reply_ack`` is awaited, then the stream ends, or
  at its ``deadline``; what was not started is left unacknowledged for the node to deliver
  elsewhere. An original stream ends after its running handler (at-most-once, as that
  protocol is).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator
from typing import Protocol

from paradoxplex.shared.batches import BatchLimits
from paradoxplex.shared.dedup import DeliveryWindow
from paradoxplex.upstream.channels import Channel, ReplyChannels
from paradoxplex.upstream.outbox import HANDLING, Handler, Handling, Message, Outbox, Taken
from paradoxplex.wire import upstream_pb2 as pb

log = logging.getLogger("paradoxplex.upstream")


class StreamHost(Protocol):
    """What a stream needs of its server (an ``UpstreamServer``)."""

    handler: Handler
    max_pending: int
    limits: BatchLimits
    acks: bool
    grace: float
    window: DeliveryWindow
    channels: ReplyChannels
    draining: bool
    deadline: float
    duplicates: int

    def finished_before(
        self, client_uuid: str, seq: int, stream: BatchStream, now: float
    ) -> bool: ...

    def stopping(self) -> bool: ...


class BatchStream:
    """One ``batchStreaming`` call: its handlers (``consume``) and its replies (``batches``)."""

    def __init__(self, server: StreamHost) -> None:
        self.server = server
        self.outbox = Outbox(server.max_pending, limits=server.limits)
        self.channel: Channel | None = None
        self.draining = False
        self.deadline = math.inf
        self.running = False
        self.superseded = False
        self.consumer: asyncio.Task[None] | None = None
        # the delivery ids finished on this stream, newest last (the window's share while
        # the stream lives; handed to the server's window when it ends)
        self.recent: deque[Handling] = deque(maxlen=server.window.max_ids)
        self.recent_version = 0
        self._recent_set: tuple[int, set[tuple[str, int]]] = (-1, set())

    def finished_here(self, key: tuple[str, int]) -> bool:
        """Whether this stream finished ``key`` (a set built once per change, only when a
        redelivery asks)."""
        version, ids = self._recent_set
        if version != self.recent_version:
            ids = {(handling[1], handling[2]) for handling in self.recent}
            self._recent_set = (self.recent_version, ids)
        return key in ids

    def drain(self, deadline: float) -> None:
        """Take no new message; end once what runs is finished, answered and taken."""
        self.deadline = min(self.deadline, deadline)
        if not self.draining:
            self.draining = True
            self.outbox.tell_draining()

    async def consume(self, requests: AsyncIterator[pb.InputBatch]) -> None:
        server, outbox = self.server, self.outbox
        handle, clock, set_handling = server.handler, time.monotonic, HANDLING.set
        with consuming(self):
            async for batch in requests:
                if batch.reply_ack or batch.drain:
                    self._control(batch)
                items = batch.items
                if not items:
                    if not batch.reply_ack and not batch.drain:
                        self._probe(batch.channel)
                    continue
                now = clock()  # one reading per batch: the window's ages are coarse
                finished: list[Handling] = []
                for item in items:
                    if outbox.full():
                        await outbox.room()
                    if self.draining:
                        break
                    seq = item.seq
                    if not seq:
                        self.running = True
                        result = handle(Message.from_request(item), outbox)
                        if result is not None:
                            await result
                        self.running = False
                        continue
                    client_uuid = item.client_uuid
                    if item.attempt > 1 and server.finished_before(client_uuid, seq, self, now):
                        outbox.duplicate(client_uuid, seq)
                        server.duplicates += 1
                        continue
                    handling = (outbox, client_uuid, seq)
                    set_handling(handling)
                    self.running = True
                    result = handle(Message.from_request(item), outbox)
                    if result is not None:
                        await result
                    self.running = False
                    if outbox.answered is not handling:
                        outbox.acknowledge(handling)
                    finished.append(handling)
                if finished:
                    self.recent.extend(finished)
                    self.recent_version += 1

    def _control(self, batch: pb.InputBatch) -> None:
        if batch.reply_ack and self.channel is not None:
            self.channel.ledger.acked(batch.reply_ack)
            self.outbox.refresh_room()
            if self.draining:
                self.outbox.kick()
        if batch.drain:
            self.drain(time.monotonic() + self.server.grace)

    def _probe(self, channel_id: str) -> None:
        server = self.server
        if channel_id and server.acks and self.channel is None:
            self.channel = server.channels.attach(channel_id, self)
        self.outbox.probed()
        if server.draining:
            self.drain(server.deadline)

    async def batches(self) -> AsyncIterator[pb.OutputBatch]:
        """What goes back to the node, until the stream ends (or the drain completes)."""
        while not (self.draining and self._drained()):
            taken = await self._take()
            if taken is None:
                return
            if self.superseded:
                self.server.channels.pass_on(self, taken)
                return
            for _ in range(taken.probes):
                yield pb.OutputBatch(origin=self.channel.origin if self.channel else "")
                for batch in self._resend():
                    yield batch
            first = 0
            if self.channel is not None and taken.items:
                first = self.server.channels.number(self.channel, taken.items)
            for batch in self._pieces(taken, first):
                yield batch

    async def _take(self) -> Taken | None:
        if not self.draining:
            return await self.outbox.take()
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            return None
        try:
            async with asyncio.timeout(remaining):
                return await self.outbox.take()
        except TimeoutError:
            return None

    def _drained(self) -> bool:
        kept = len(self.channel.ledger) if self.channel is not None else 0
        return not self.running and self.outbox.empty and not kept

    def _resend(self) -> Iterator[pb.OutputBatch]:
        """A channel's kept replies, with their numbers, first on its new stream."""
        if self.channel is None:
            return
        for first, items in self.channel.ledger.unacked():
            yield from self._pieces(Taken(items), first)

    def _pieces(self, taken: Taken, first: int) -> list[pb.OutputBatch]:
        items = taken.items
        batches: list[pb.OutputBatch] = []
        start = 0
        if items:
            for length in self.server.limits.split([item.ByteSize() for item in items]):
                batch = pb.OutputBatch(items=items[start : start + length])
                if first:
                    batch.first_reply = first + start
                batches.append(batch)
                start += length
        elif taken.acks or taken.duplicates or taken.draining:
            batches.append(pb.OutputBatch())
        if not batches:
            return batches
        if taken.draining:
            batches[0].draining = True
        if taken.duplicates:
            batches[0].duplicates = taken.duplicates
        if taken.acks:
            acks = batches[-1].acks
            for client_uuid, seq in taken.acks.items():
                acks.add(client_uuid=client_uuid, seq=seq)
        return batches

    def __repr__(self) -> str:
        return (
            f"<BatchStream channel={self.channel.id if self.channel else '-'} "
            f"draining={self.draining} {self.outbox!r}>"
        )


class OriginalStream:
    """One ``bidirectionalStreaming`` call: no numbers, no acknowledgements."""

    def __init__(self, server: StreamHost) -> None:
        self.server = server
        self.outbox = Outbox(server.max_pending, limits=server.limits)
        self.running = False
        self.consumer: asyncio.Task[None] | None = None

    def drain(self, deadline: float) -> None:
        if not self.running and self.consumer is not None:
            self.consumer.cancel()

    async def consume(self, requests: AsyncIterator[pb.InputStreamRequest]) -> None:
        server, outbox, handle = self.server, self.outbox, self.server.handler
        with consuming(self):
            async for request in requests:
                if outbox.full():
                    await outbox.room()
                if server.draining:
                    break
                self.running = True
                result = handle(Message.from_request(request), outbox)
                if result is not None:
                    await result
                self.running = False
                if server.stopping():  # a drain began while it ran
                    break

    async def replies(self) -> AsyncIterator[pb.OutputStreamRequest]:
        while (taken := await self.outbox.take()) is not None:
            for item in taken.items:
                yield item


Stream = BatchStream | OriginalStream


@contextlib.contextmanager
def consuming(stream: Stream) -> Iterator[None]:
    """A stream's consumer at work: a handler's error is logged and ends the stream; however
    it ends, nothing runs any more and its outbox closes."""
    try:
        yield
    except Exception:
        log.exception("upstream handler failed; ending the stream")
        raise
    finally:
        stream.running = False
        stream.outbox.close()


async def finish(consumer: asyncio.Task[None] | None) -> None:
    """End a stream's consumer (its call is over), whatever it raised."""
    if consumer is None:
        return
    consumer.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await consumer
