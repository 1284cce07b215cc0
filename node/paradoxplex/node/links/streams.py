"""An upstream link's data streams: what its queue holds goes out, the replies come back.

Rules:
- ``batchStreaming`` (many messages per gRPC message, drained from the queue without a
  timer) when the upstream answers the probe (an empty batch, answered within
  ``ready_timeout``); UNIMPLEMENTED, no answer in time or an ended stream mean the original
  proto: ``parallel`` ``bidirectionalStreaming`` calls, one message per gRPC message, each
  stream fed by its own lane of the queue so that a socket's messages keep to one stream
  (in order). Any other error of the probe is the upstream's failure.
- Batches follow ``paradoxplex.shared.batches`` (``limits``: by default at most 512 messages
  and 1 MiB, a larger message alone); the queue cuts them (``links/queue.py``).
- Acknowledged delivery (``deliveries``, ``links/deliveries.py``): the batch probe names the
  node's reply channel; an upstream that answers with its origin gets numbered messages
  (seq, attempt), each kept from the moment its write starts; its acknowledgements (``acks``,
  and a reply's ``cause_seq``, applied once the reply is taken) release them. Replies are
  numbered: copies are dropped, and the numbers taken go back in the next batch's
  ``reply_ack``, piggybacked on data, or alone ``REPLY_ACK_DELAY`` (50 ms) after the replies
  when no data goes out (at once while the upstream drains: it waits for them to end).
  ``request_drain`` sends ``drain``; ``draining`` in a batch from the upstream calls
  ``on_draining``.
- Without acknowledgements, a write that fails or is cancelled (the link is going down) puts
  its items back at the front of the queue, to be placed elsewhere: a cancelled write may
  have reached the upstream, so this risks a duplicate rather than a loss. With them, the
  items are kept already and go back with the rest of what is unacknowledged.
- A reply may return an awaitable (``receive``): the stream reads nothing more until it is
  done (backpressure towards the upstream). It runs as a task of its own: if the link goes
  down meanwhile, the reply, already taken (and acknowledged), still goes where it goes.
- Every writer and reader ends only by ``UpstreamUnavailable`` (the stream broke or ended)
  or by being cancelled; ``close`` cancels the calls.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from paradoxplex.node.links.channels import read_message, stream_failure
from paradoxplex.node.links.deliveries import LinkDeliveries
from paradoxplex.node.links.queue import LinkQueue, Outgoing
from paradoxplex.node.metrics import LinkCounts
from paradoxplex.shared.batches import BatchLimits
from paradoxplex.shared.config import DEFAULT_STREAMS
from paradoxplex.shared.errors import UpstreamUnavailable
from paradoxplex.shared.timestamps import timestamp
from paradoxplex.wire import upstream_pb2 as pb

ReplyReceiver = Callable[[pb.OutputStreamRequest], Awaitable[None] | None]
REPLY_ACK_DELAY = 0.05


def _nothing() -> None:
    return None


class DataStreams:
    """One link's data stream(s), opened again for each serving round (see the rules)."""

    def __init__(
        self,
        upstream_id: str,
        queue: LinkQueue,
        counts: LinkCounts,
        receive: ReplyReceiver,
        deliveries: LinkDeliveries,
        *,
        limits: BatchLimits,
        ready_timeout: float,
        parallel: int = DEFAULT_STREAMS,
        batch: bool = True,
        channel: str = "",
        on_draining: Callable[[], None] = _nothing,
    ) -> None:
        self.upstream_id = upstream_id
        self.queue = queue
        self.counts = counts
        self.deliveries = deliveries
        self.limits = limits
        self.ready_timeout = ready_timeout
        self.parallel = parallel
        self.batch_wanted = batch
        self.channel = channel
        self.batching: bool | None = None  # None until the first round opened
        self.drain_requested = False
        self.draining = False  # the upstream said it drains (this round)
        self._drain_due = False
        self._reply_ack_due = False
        self._reply_ack_timer: asyncio.TimerHandle | None = None
        self._on_draining = on_draining
        self._receive = receive
        self._calls: list[Any] = []

    async def open(self, stub: Any) -> list[asyncio.Task[None]]:
        """Open the stream(s) on ``stub``; the running writers and readers."""
        opened = await self._open_batch(stub) if self.batch_wanted else None
        if opened is not None:
            call, origin = opened
            self.batching = True
            self.draining = False
            self.deliveries.opened(origin)
            self.queue.set_lanes(1)
            self._calls = [call]
            self._drain_due = self.drain_requested
            return [
                asyncio.create_task(self._write_batches(call)),
                asyncio.create_task(self._read_batches(call)),
            ]
        self.batching = False
        self.deliveries.opened("")
        self.queue.set_lanes(self.parallel)  # a socket's messages keep to one stream
        self._calls = [stub.bidirectionalStreaming() for _ in range(self.parallel)]
        tasks = []
        for lane, each in enumerate(self._calls):
            tasks.append(asyncio.create_task(self._write_each(each, lane)))
            tasks.append(asyncio.create_task(self._read_each(each)))
        return tasks

    @property
    def running(self) -> bool:
        """Whether a serving round's calls are open."""
        return bool(self._calls)

    @property
    def acked(self) -> bool:
        """Whether the open stream's upstream acknowledges what it is sent."""
        return bool(self._calls) and self.deliveries.acked

    def request_drain(self) -> None:
        """Ask the upstream to drain this stream (and the next, if it is reopened)."""
        self.drain_requested = self._drain_due = True
        self.queue.poke()

    def close(self) -> None:
        for call in self._calls:
            call.cancel()
        self._calls = []
        if self._reply_ack_timer is not None:
            self._reply_ack_timer.cancel()
            self._reply_ack_timer = None

    async def _open_batch(self, stub: Any) -> tuple[Any, str] | None:
        """Probe ``batchStreaming`` with an empty batch (naming the reply channel): the call
        and the upstream's origin; None means fall back to the original."""
        call = stub.batchStreaming()
        try:
            async with asyncio.timeout(self.ready_timeout):
                await call.write(pb.InputBatch(channel=self.channel))
                answer = await call.read()
        except (grpc.aio.AioRpcError, TimeoutError) as error:
            call.cancel()
            code = error.code() if isinstance(error, grpc.aio.AioRpcError) else None
            if code not in (grpc.StatusCode.UNIMPLEMENTED, None):
                raise UpstreamUnavailable(
                    self.upstream_id, f"batch stream failed: {code}"
                ) from None
            return None
        if answer is grpc.aio.EOF:
            call.cancel()
            return None
        return call, answer.origin if self.channel else ""

    async def _write_batches(self, call: Any) -> None:
        deliveries = self.deliveries
        acked = deliveries.acked
        while True:
            items = await self.queue.next(self.limits.max_items)
            now = timestamp(time.time())
            batch = pb.InputBatch()
            add = batch.items.add
            if acked:
                for item in items:
                    if item.event is None and item.attempt == 1:  # the first: attempt left out
                        add(time=now, client_uuid=item.client_uuid, payload=item.payload,
                            seq=item.seq)  # fmt: skip
                    elif item.event is None:
                        add(time=now, client_uuid=item.client_uuid, payload=item.payload,
                            seq=item.seq, attempt=item.attempt)  # fmt: skip
                    else:
                        add(time=now, client_uuid=item.client_uuid, event=item.event,
                            seq=item.seq, attempt=item.attempt)  # fmt: skip
                deliveries.sent(items)  # kept from now on: a cut write goes out again
                if self._reply_ack_due:
                    self._reply_ack_due = False
                    batch.reply_ack = deliveries.replies_upto
                if self._drain_due:
                    self._drain_due = False
                    batch.drain = True
                if not items and not batch.reply_ack and not batch.drain:
                    continue
            else:
                if not items:
                    continue
                for item in items:
                    if item.event is None:
                        add(time=now, client_uuid=item.client_uuid, payload=item.payload)
                    else:
                        add(time=now, client_uuid=item.client_uuid, event=item.event)
            await self._write(call, batch, items, acked)
            self.counts.sent += len(items)
            if not acked:
                deliveries.sent(items)

    async def _write_each(self, call: Any, lane: int) -> None:
        deliveries = self.deliveries
        while True:
            items = await self.queue.next(1, lane)
            if not items:
                continue
            await self._write(call, items[0].request(timestamp(time.time())), items, False)
            self.counts.sent += 1
            deliveries.sent(items)

    async def _write(self, call: Any, message: Any, items: list[Outgoing], kept: bool) -> None:
        """Write one gRPC message; when that fails its items go back to the queue, unless
        they are ``kept`` (unacknowledged: they go back with the rest)."""
        try:
            await call.write(message)
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError) as error:
            if not kept:
                self.queue.put_back(items)
            raise UpstreamUnavailable(self.upstream_id, stream_failure(error)) from None
        except asyncio.CancelledError:
            if not kept:
                self.queue.put_back(items)
            raise

    async def _read_batches(self, call: Any) -> None:
        receive, deliveries = self._receive, self.deliveries
        release, answered = deliveries.unacked.ack, deliveries.answers.answered
        while True:
            batch = await read_message(call, self.upstream_id)
            items = batch.items
            self.counts.received += len(items)
            if batch.draining:
                self.draining = True
                self._on_draining()
            number = batch.first_reply
            upto = deliveries.replies_upto
            copies = 0
            for reply in items:
                if number:
                    number += 1
                    if number <= upto + 1:  # taken already (sent again after a reconnect)
                        copies += 1
                        continue
                    upto = number - 1
                cause = reply.cause_seq
                if cause:
                    client_uuid = reply.client_uuid
                    if answered and not deliveries.answers_first(client_uuid, cause):
                        continue
                    pending = receive(reply)
                    release(client_uuid, cause)
                    if deliveries.final is not None:
                        deliveries.check_final(client_uuid)
                else:
                    pending = receive(reply)
                    if not deliveries.acked and reply.client_uuid:
                        deliveries.replied(reply.client_uuid)
                if pending is not None:
                    deliveries.replies_upto = upto
                    await asyncio.shield(asyncio.ensure_future(pending))
            deliveries.replies_upto = upto
            if copies:
                deliveries.metrics.duplicates.labels("node").inc(copies)
            for entry in batch.acks:
                deliveries.ack(entry.client_uuid, entry.seq)
            if batch.duplicates:
                deliveries.metrics.duplicates.labels("upstream").inc(batch.duplicates)
            if batch.first_reply:
                self._ack_replies_soon()

    def _ack_replies_soon(self) -> None:
        """Tell the upstream which replies were taken: with the next batch, or alone soon
        (at once while it drains)."""
        self._reply_ack_due = True
        if self.draining or self.drain_requested:
            self.queue.poke()
        elif self._reply_ack_timer is None:
            loop = asyncio.get_running_loop()
            self._reply_ack_timer = loop.call_later(REPLY_ACK_DELAY, self._poke_for_ack)

    def _poke_for_ack(self) -> None:
        self._reply_ack_timer = None
        if self._reply_ack_due:
            self.queue.poke()

    async def _read_each(self, call: Any) -> None:
        receive, deliveries = self._receive, self.deliveries
        while True:
            reply = await read_message(call, self.upstream_id)
            self.counts.received += 1
            pending = receive(reply)
            if reply.client_uuid:
                deliveries.replied(reply.client_uuid)
            if pending is not None:
                await pending

    def __repr__(self) -> str:
        mode = {None: "unopened", True: "batch", False: f"original x{self.parallel}"}
        return f"<DataStreams {self.upstream_id} {mode[self.batching]} calls={len(self._calls)}>"
