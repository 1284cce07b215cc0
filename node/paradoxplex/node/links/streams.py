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
- A write that fails or is cancelled (the link is going down) puts its items back at the
  front of the queue, to be placed elsewhere: a cancelled write may have reached the
  upstream, so this risks a duplicate rather than a loss.
- A reply may return an awaitable (``receive``): the stream reads nothing more until it is
  done (backpressure towards the upstream).
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
from paradoxplex.node.links.queue import LinkQueue, Outgoing
from paradoxplex.node.metrics import LinkCounts
from paradoxplex.shared.batches import BatchLimits
from paradoxplex.shared.errors import UpstreamUnavailable
from paradoxplex.shared.timestamps import timestamp
from paradoxplex.wire import upstream_pb2 as pb

ReplyReceiver = Callable[[pb.OutputStreamRequest], Awaitable[None] | None]


class DataStreams:
    """One link's data stream(s), opened again for each serving round (see the rules)."""

    def __init__(
        self,
        upstream_id: str,
        queue: LinkQueue,
        counts: LinkCounts,
        receive: ReplyReceiver,
        *,
        limits: BatchLimits,
        ready_timeout: float,
        parallel: int = 16,
        batch: bool = True,
    ) -> None:
        self.upstream_id = upstream_id
        self.queue = queue
        self.counts = counts
        self.limits = limits
        self.ready_timeout = ready_timeout
        self.parallel = parallel
        self.batch_wanted = batch
        self.batching: bool | None = None  # None until the first round opened
        self._receive = receive
        self._calls: list[Any] = []

    async def open(self, stub: Any) -> list[asyncio.Task[None]]:
        """Open the stream(s) on ``stub``; the running writers and readers."""
        call = await self._open_batch(stub) if self.batch_wanted else None
        if call is not None:
            self.batching = True
            self.queue.set_lanes(1)
            self._calls = [call]
            return [
                asyncio.create_task(self._write_batches(call)),
                asyncio.create_task(self._read_batches(call)),
            ]
        self.batching = False
        self.queue.set_lanes(self.parallel)  # a socket's messages keep to one stream
        self._calls = [stub.bidirectionalStreaming() for _ in range(self.parallel)]
        tasks = []
        for lane, each in enumerate(self._calls):
            tasks.append(asyncio.create_task(self._write_each(each, lane)))
            tasks.append(asyncio.create_task(self._read_each(each)))
        return tasks

    def close(self) -> None:
        for call in self._calls:
            call.cancel()
        self._calls = []

    async def _open_batch(self, stub: Any) -> Any:
        """Probe ``batchStreaming`` with an empty batch; None means fall back to the original."""
        call = stub.batchStreaming()
        try:
            async with asyncio.timeout(self.ready_timeout):
                await call.write(pb.InputBatch())
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
        return call

    async def _write_batches(self, call: Any) -> None:
        while True:
            items = await self.queue.next(self.limits.max_items)
            now = timestamp(time.time())
            batch = pb.InputBatch()
            add = batch.items.add
            for item in items:
                if item.event is None:
                    add(time=now, client_uuid=item.client_uuid, payload=item.payload)
                else:
                    add(time=now, client_uuid=item.client_uuid, event=item.event)
            await self._write(call, batch, items)
            self.counts.sent += len(items)

    async def _write_each(self, call: Any, lane: int) -> None:
        while True:
            items = await self.queue.next(1, lane)
            await self._write(call, items[0].request(timestamp(time.time())), items)
            self.counts.sent += 1

    async def _write(self, call: Any, message: Any, items: list[Outgoing]) -> None:
        """Write one gRPC message; its items go back to the queue when that fails."""
        try:
            await call.write(message)
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError) as error:
            self.queue.put_back(items)
            raise UpstreamUnavailable(self.upstream_id, stream_failure(error)) from None
        except asyncio.CancelledError:
            self.queue.put_back(items)
            raise

    async def _read_batches(self, call: Any) -> None:
        receive = self._receive
        while True:
            batch = await read_message(call, self.upstream_id)
            self.counts.received += len(batch.items)
            for reply in batch.items:
                pending = receive(reply)
                if pending is not None:
                    await pending

    async def _read_each(self, call: Any) -> None:
        receive = self._receive
        while True:
            reply = await read_message(call, self.upstream_id)
            self.counts.received += 1
            pending = receive(reply)
            if pending is not None:
                await pending

    def __repr__(self) -> str:
        mode = {None: "unopened", True: "batch", False: f"original x{self.parallel}"}
        return f"<DataStreams {self.upstream_id} {mode[self.batching]} calls={len(self._calls)}>"
