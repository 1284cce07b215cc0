"""One upstream link: a gRPC channel, the ready check, the live stream, the data streams.

Lifecycle (the table is ``paradoxplex.shared.health``): ask ``ready`` (retried with backoff
by tenacity until it answers ready=true within ``ready_timeout``), then open the data
stream(s) and the ``live`` stream, and stay READY while ``live = true`` keeps arriving within
``alive_timeout``. A broken stream or a missed live takes the link out of rotation at once;
what is still queued goes back to the node to be placed on another link.

Data streams: ``batchStreaming`` (many messages per gRPC message, drained from the queue
without a timer) when the upstream answers the probe, else ``streams`` parallel
``bidirectionalStreaming`` calls, the original's one message per gRPC message, each stream
fed by its own lane of the queue so that a socket's messages keep to one stream (in order).

Limits: ``queue_limit`` messages queued per link (the node stops reading sockets when every
link is full); batches follow ``paradoxplex.shared.batches`` (``limits``, by default at most
512 messages and 1 MiB, a larger message alone); a message too large for one gRPC message
(``MAX_MESSAGE``, set on the channel both ways) is dropped, counted as
``paradoxplex_drops_total{reason="message_too_large"}`` and logged, and the stream goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable
from typing import Any, Protocol

import grpc
from google.protobuf import empty_pb2
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential, wait_random

from paradoxplex.node.links.channels import open_channel, read_message, stream_failure
from paradoxplex.node.links.queue import LinkQueue, Outgoing
from paradoxplex.node.metrics import Metrics
from paradoxplex.shared.batches import BatchLimits
from paradoxplex.shared.causes import grpc_cause
from paradoxplex.shared.drops import DropReason
from paradoxplex.shared.errors import UpstreamUnavailable
from paradoxplex.shared.health import Health, HealthTracker, Probe, in_rotation
from paradoxplex.shared.timestamps import timestamp
from paradoxplex.shared.upstreams import UpstreamMode, UpstreamSpec
from paradoxplex.wire import upstream_pb2 as pb
from paradoxplex.wire import upstream_pb2_grpc as pb_grpc

log = logging.getLogger("paradoxplex.node.links")

BATCH_LIMITS = BatchLimits()
EMPTY = empty_pb2.Empty()


class LinkHost(Protocol):
    metrics: Metrics

    def link_changed(self, link: UpstreamLink) -> None:
        """The link entered or left rotation."""

    def link_room(self, link: UpstreamLink) -> None:
        """The link's queue has room again."""

    def reroute(self, items: list[Outgoing]) -> None:
        """Items that were queued on a link that left rotation."""

    def receive_reply(self, reply: pb.OutputStreamRequest) -> Awaitable[None] | None:
        """An upstream's reply; may return an awaitable to apply backpressure to the stream."""


class UpstreamLink:
    """A node's connection to one upstream, kept open with backoff until removed."""

    def __init__(
        self,
        spec: UpstreamSpec,
        host: LinkHost,
        *,
        queue_limit: int = 1024,
        streams: int = 16,
        batch: bool = True,
        limits: BatchLimits = BATCH_LIMITS,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        self.spec = spec
        self.credentials = credentials
        self.host = host
        self.streams = streams
        self.batch_wanted = batch
        self.limits = limits
        self.batching: bool | None = None
        self.queue = LinkQueue(
            limit=queue_limit,
            limits=limits,
            on_room=lambda: host.link_room(self),
            on_refused=self._refuse,
        )
        self.tracker = HealthTracker(now=time.monotonic())
        self.error = ""
        self.rtt: float | None = None
        self._warned = ""
        self._ping_sent: float | None = None
        self._attempts = 0
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._channel: grpc.aio.Channel | None = None
        metrics = host.metrics
        self.counts = metrics.traffic.upstream(spec.id)

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def state(self) -> Health:
        return self.tracker.state

    @property
    def in_rotation(self) -> bool:
        return in_rotation(self.tracker.state)

    def has_room(self) -> bool:
        return self.queue.has_room()

    def enqueue(self, item: Outgoing) -> None:
        self.queue.put(item)

    def view(self) -> dict[str, Any]:
        """This node's view of the upstream, for the fleet and the admin API."""
        return {
            "state": self.tracker.state.value,
            "ready": self.in_rotation,
            "live": self.in_rotation,
            "since": time.time() - (time.monotonic() - self.tracker.since),
            "queued": len(self.queue),
            "batch": self.batching,
            "error": self.error,
            "reason": self.reason,
            "sent": self.counts.sent,
            "received": self.counts.received,
            "errors": self.counts.errors,
            "rtt_ms": None if self.rtt is None else round(self.rtt * 1000, 3),
        }

    @property
    def reason(self) -> str:
        """Why the upstream is not in rotation ("" when it is)."""
        if self.in_rotation:
            return ""
        if self.state is Health.DRAINING:
            return "draining"
        return self.error or self.state.value

    # lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        self._channel = open_channel(self.spec, self.credentials)
        self._task = asyncio.create_task(self._run(), name=f"upstream {self.id}")
        if self.spec.mode is UpstreamMode.DRAINING:
            self.drain()

    def drain(self) -> None:
        """No new traffic; what is queued and in flight finishes."""
        if self._apply(Probe.DRAIN):
            log.info("upstream %s draining", self.id)

    async def close(self, *, grace: float = 5.0) -> None:
        """Stop: let the queue empty for up to ``grace`` seconds, then end the streams (not
        logged as a drain: the upstream stays registered for the fleet)."""
        self._apply(Probe.DRAIN)
        deadline = time.monotonic() + grace
        while self.queue and time.monotonic() < deadline and self.batching is not None:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        self._stopping = True
        self._apply(Probe.REMOVE)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._channel is not None:
            await self._channel.close()
        leftovers = self.queue.drain()
        if leftovers:
            self.host.reroute(leftovers)

    def _apply(self, probe: Probe) -> bool:
        was = self.in_rotation
        changed = self.tracker.apply(probe, now=time.monotonic())
        if changed:
            self.host.link_changed(self)
            if was and not self.in_rotation and self.queue and probe is not Probe.DRAIN:
                leftovers = self.queue.drain()
                self.host.reroute(leftovers)
        return changed

    async def _run(self) -> None:
        while not self._stopping and self.state is not Health.REMOVED:
            try:
                await self._await_ready()
                await self._serve()
            except UpstreamUnavailable as error:
                self.error = error.reason
                self.counts.errors += 1
                probe = (
                    Probe.READY_FAILED if self.state is Health.CONNECTING else Probe.STREAM_BROKEN
                )
                if self.state is not Health.DRAINING and not self._stopping:
                    log.warning("upstream %s out of rotation: %s", self.id, error.reason)
                    self._warned = error.reason
                self._apply(probe)
            except Exception:
                log.exception("upstream %s: unexpected error", self.id)
                self.error = "internal error"
                self._apply(Probe.STREAM_BROKEN)
            if self._stop_requested():
                return
            await asyncio.sleep(min(5.0, 0.1 * 2 ** min(self.tracker.failures, 6)))
            self._apply(Probe.RETRY)

    def _stop_requested(self) -> bool:
        return self._stopping

    async def _await_ready(self) -> None:
        retrying = AsyncRetrying(
            # not wait_exponential_jitter(initial=...): tenacity 9.2 deprecates "initial"
            wait=wait_exponential(multiplier=0.2, max=5.0) + wait_random(0, 0.2),
            retry=retry_if_exception_type(UpstreamUnavailable),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                if self._stopping:
                    return
                await self._check_ready()

    async def _check_ready(self) -> None:
        """One ready call. Attempts alternate: one fails fast, to learn why the upstream
        cannot be reached ("connection refused"), the next waits for the channel to connect,
        so that an upstream coming up is used as soon as gRPC reconnects."""
        stub: Any = pb_grpc.UpstreamPeerServiceStub(self._channel)  # type: ignore[arg-type]
        self._attempts += 1
        timeout = self.spec.ready_timeout
        try:
            result = await stub.ready(
                EMPTY, timeout=timeout, wait_for_ready=self._attempts % 2 == 0
            )
        except grpc.aio.AioRpcError as error:
            cause = grpc_cause(error.code().name, error.details() or "", timeout=timeout)
            if error.code() is not grpc.StatusCode.DEADLINE_EXCEEDED or not self.error:
                self.error = f"unreachable: {cause}"
            self._failed_attempt()
            raise UpstreamUnavailable(self.id, self.error) from None
        if not result.ready:
            self.error = "ready check answered ready=false"
            self._failed_attempt()
            raise UpstreamUnavailable(self.id, self.error)
        self._attempts = 0

    def _failed_attempt(self) -> None:
        """Count a failed ready check; warn once per new reason (not at every retry)."""
        self.counts.errors += 1
        if self.error != self._warned and not self._stopping:
            self._warned = self.error
            log.warning("upstream %s not ready: %s (retrying with backoff)", self.id, self.error)
            self.host.link_changed(self)  # publishes the view with its new reason

    # serving ----------------------------------------------------------------------------

    async def _serve(self) -> None:
        stub: Any = pb_grpc.UpstreamPeerServiceStub(self._channel)  # type: ignore[arg-type]
        calls: list[Any] = []
        tasks: list[asyncio.Task[None]] = []
        try:
            batch_call = await self._open_batch(stub) if self.batch_wanted else None
            if batch_call is not None:
                self.batching = True
                self.queue.set_lanes(1)
                calls.append(batch_call)
                tasks += [
                    asyncio.create_task(self._write_batches(batch_call)),
                    asyncio.create_task(self._read_batches(batch_call)),
                ]
            else:
                self.batching = False
                self.queue.set_lanes(self.streams)  # a socket's messages keep to one stream
                for lane in range(self.streams):
                    call = stub.bidirectionalStreaming()
                    calls.append(call)
                    tasks += [
                        asyncio.create_task(self._write_each(call, lane)),
                        asyncio.create_task(self._read_each(call)),
                    ]
            tasks.append(asyncio.create_task(self._keep_live(stub)))
            self.error = ""
            self._warned = ""
            self._apply(Probe.READY_OK)
            log.info("upstream %s ready (%s)", self.id, "batch" if self.batching else "original")
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
            raise UpstreamUnavailable(self.id, "stream ended")
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            for call in calls:
                call.cancel()

    async def _open_batch(self, stub: Any) -> Any:
        """Probe ``batchStreaming`` with an empty batch; None means fall back to the original."""
        call = stub.batchStreaming()
        try:
            async with asyncio.timeout(self.spec.ready_timeout):
                await call.write(pb.InputBatch())
                answer = await call.read()
        except (grpc.aio.AioRpcError, TimeoutError) as error:
            call.cancel()
            code = error.code() if isinstance(error, grpc.aio.AioRpcError) else None
            if code not in (grpc.StatusCode.UNIMPLEMENTED, None):
                raise UpstreamUnavailable(self.id, f"batch stream failed: {code}") from None
            return None
        if answer is grpc.aio.EOF:
            call.cancel()
            return None
        return call

    def _refuse(self, item: Outgoing, size: int) -> None:
        self.host.metrics.drops.labels(DropReason.MESSAGE_TOO_LARGE).inc()
        log.warning(
            "upstream %s: dropped a message of %d bytes from socket %s: over the %d-byte limit "
            "of one gRPC message",
            self.id,
            size,
            item.client_uuid,
            self.limits.max_single,
        )

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
        """Write one gRPC message. When the write fails or is cancelled (the link is going
        down), its items go back to the front of the queue to be placed elsewhere: a cancelled
        write may have reached the upstream, so this risks a duplicate rather than a loss."""
        try:
            await call.write(message)
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError) as error:
            self.queue.put_back(items)
            raise UpstreamUnavailable(self.id, stream_failure(error)) from None
        except asyncio.CancelledError:
            self.queue.put_back(items)
            raise

    async def _read_batches(self, call: Any) -> None:
        receive = self.host.receive_reply
        while True:
            batch = await read_message(call, self.id)
            self.counts.received += len(batch.items)
            for reply in batch.items:
                pending = receive(reply)
                if pending is not None:
                    await pending

    async def _read_each(self, call: Any) -> None:
        receive = self.host.receive_reply
        while True:
            reply = await read_message(call, self.id)
            self.counts.received += 1
            pending = receive(reply)
            if pending is not None:
                await pending

    async def _keep_live(self, stub: Any) -> None:
        """Ping ``live`` each interval; out of rotation after ``alive_timeout`` without live."""
        interval = max(0.05, min(5.0, self.spec.alive_timeout / 3))
        call = stub.live()
        reader = asyncio.create_task(self._read_live(call))
        try:
            while True:
                if reader.done():
                    call = stub.live()
                    reader = asyncio.create_task(self._read_live(call))
                with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
                    self._ping_sent = time.monotonic()
                    await call.write(EMPTY)
                await asyncio.sleep(interval)
                overdue = self.tracker.live_overdue(
                    now=time.monotonic(), alive_timeout=self.spec.alive_timeout
                )
                if overdue:
                    raise UpstreamUnavailable(
                        self.id, f"no live=true within {self.spec.alive_timeout:g}s"
                    )
        finally:
            reader.cancel()
            call.cancel()

    async def _read_live(self, call: Any) -> None:
        with contextlib.suppress(grpc.aio.AioRpcError):
            while True:
                result = await call.read()
                if result is grpc.aio.EOF:
                    return
                now = time.monotonic()
                if self._ping_sent is not None:
                    self.rtt, self._ping_sent = now - self._ping_sent, None
                    self.host.metrics.upstream_rtt.labels(self.id).observe(self.rtt)
                if result.live:
                    self.tracker.apply(Probe.LIVE_OK, now=now)

    def __repr__(self) -> str:
        return f"<UpstreamLink {self.id} {self.state.value} queued={len(self.queue)}>"
