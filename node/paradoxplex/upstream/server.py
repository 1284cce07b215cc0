"""The upstream SDK's gRPC server: the original RPCs, the batch RPC, ready and live.

Rules:
- Limits (``paradoxplex.shared.batches``): the server sends and receives gRPC messages of up
  to ``MAX_MESSAGE`` (64 MiB); replies go back in batches of at most 512 replies and 1 MiB (a
  larger reply alone); a reply too large for one gRPC message is refused by ``Outbox``.
- Handlers run one at a time per stream, in the order the messages arrived.
- Acknowledged delivery (the batch RPC, when the node names a reply channel in its probe and
  ``acks`` is on): the probe is answered with this process's ``origin``; numbered messages
  are acknowledged as the ``Outbox`` says; a redelivery of an id finished within the
  window (the last 65,536 ids of each open stream, and of the streams that ended within 5
  minutes: ``DeliveryWindow``) is acknowledged without running the handler and counted
  (``duplicates``, reported to the node). Replies are numbered per channel (one node
  incarnation) and kept until the node takes them (``ReplyLedger``); a new stream of the
  same channel sends the kept ones again first. A channel without a stream for
  ``RESEND_AFTER`` seconds (5) hands its kept replies to another stream (any node finds the
  socket), counted in ``replies_rerouted``; with no stream at all for ``REPLY_HOLD`` seconds
  (60) they are dropped, counted in ``replies_lost`` and logged. A channel keeps at most
  ``max_pending`` replies: past it the oldest are no longer kept (at-most-once for them,
  counted in ``replies_unkept``), so a node that cannot acknowledge costs bounded memory.
- Draining (SIGTERM or SIGINT under ``run``/``serve``, ``drain()``, or the node's drain of one
  stream): ``ready`` answers false, each stream tells the node (``draining``) and starts no
  new handler, the running one finishes, its replies and acknowledgements go out, the node's
  ``reply_ack`` is awaited, then the stream ends; what was not started is left
  unacknowledged for the node to deliver elsewhere. All within ``grace`` seconds (10 by
  default); then the server stops. Original-proto streams end after their running handler
  (at-most-once, as that protocol is).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import logging
import math
import signal
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
from google.protobuf import empty_pb2

from paradoxplex.shared.batches import MAX_MESSAGE, BatchLimits
from paradoxplex.shared.dedup import DeliveryWindow, ReplyLedger
from paradoxplex.shared.upstreams import EXAMPLE_UPSTREAM, UPSTREAM_GRACE
from paradoxplex.upstream.outbox import (
    BATCH_LIMITS,
    BROADCASTS,
    HANDLING,
    MAX_PENDING,
    Handler,
    Handling,
    Message,
    Outbox,
    OutboxFull,
    Taken,
    now_text,
)
from paradoxplex.wire import upstream_pb2 as pb
from paradoxplex.wire import upstream_pb2_grpc as pb_grpc

__all__ = [
    "BATCH_LIMITS",
    "BROADCASTS",
    "DEFAULT_GRACE",
    "MAX_PENDING",
    "SERVER_OPTIONS",
    "Handler",
    "Message",
    "Outbox",
    "OutboxFull",
    "UpstreamServer",
    "server_credentials",
]

log = logging.getLogger("paradoxplex.upstream")

DEFAULT_GRACE = UPSTREAM_GRACE
RESEND_AFTER = 5.0
REPLY_HOLD = 60.0
MAX_IDLE_CHANNELS = 256
SERVER_OPTIONS = [
    # as the node's channel; ``UpstreamServer(limits=...)`` sets the send limit
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.max_send_message_length", MAX_MESSAGE),
    # accept gentle client keepalive pings
    ("grpc.http2.min_ping_interval_without_data_ms", 60_000),
    # a taken port is an error, not a second server silently sharing it
    ("grpc.so_reuseport", 0),
]
_epochs = itertools.count(1)


class Channel:
    """One node incarnation's replies: numbered, kept until taken; its current stream."""

    __slots__ = ("id", "ledger", "lonely_since", "origin", "stream")

    def __init__(self, channel_id: str, origin: str) -> None:
        self.id = channel_id
        self.origin = f"{origin}.{next(_epochs)}"  # numbering starts over with a new origin
        self.ledger: ReplyLedger[pb.OutputStreamRequest] = ReplyLedger()
        self.stream: BatchStream | None = None
        self.lonely_since = 0.0

    def __repr__(self) -> str:
        return f"<Channel {self.id} {self.ledger!r} stream={self.stream is not None}>"


class BatchStream:
    """One ``batchStreaming`` call: its handlers (``consume``) and its replies (``batches``)."""

    def __init__(self, server: UpstreamServer) -> None:
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
        try:
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
        except Exception:
            log.exception("upstream handler failed; ending the stream")
            raise
        finally:
            self.running = False
            outbox.close()

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
            self.channel = server._attach(channel_id, self)
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
                self.server._pass_on(self, taken)
                return
            for _ in range(taken.probes):
                yield pb.OutputBatch(origin=self.channel.origin if self.channel else "")
                for batch in self._resend():
                    yield batch
            first = 0
            if self.channel is not None and taken.items:
                first = self.channel.ledger.number(taken.items)
                self.server.replies_unkept += self.channel.ledger.trim(self.server.max_pending)
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

    def __init__(self, server: UpstreamServer) -> None:
        self.server = server
        self.outbox = Outbox(server.max_pending, limits=server.limits)
        self.running = False
        self.consumer: asyncio.Task[None] | None = None

    def drain(self, deadline: float) -> None:
        if not self.running and self.consumer is not None:
            self.consumer.cancel()

    async def consume(self, requests: AsyncIterator[pb.InputStreamRequest]) -> None:
        server, outbox, handle = self.server, self.outbox, self.server.handler
        try:
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
        except Exception:
            log.exception("upstream handler failed; ending the stream")
            raise
        finally:
            self.running = False
            outbox.close()

    async def replies(self) -> AsyncIterator[pb.OutputStreamRequest]:
        while (taken := await self.outbox.take()) is not None:
            for item in taken.items:
                yield item


Stream = BatchStream | OriginalStream


class UpstreamServer(pb_grpc.UpstreamPeerServiceServicer):
    """A gRPC server that hands each socket message to ``handler`` (see the module's rules).

    ``acks=False`` answers the batch probe without an origin: the node then sends messages
    unnumbered and keeps nothing (at-most-once; for benchmarks). ``grace``: seconds a drain
    may take (10)."""

    def __init__(
        self,
        handler: Handler,
        *,
        max_pending: int = MAX_PENDING,
        batch: bool = True,
        limits: BatchLimits = BATCH_LIMITS,
        acks: bool = True,
        grace: float = DEFAULT_GRACE,
        window: DeliveryWindow | None = None,
    ) -> None:
        self.handler = handler
        self.max_pending = max_pending
        self.limits = limits
        self.batch = batch
        self.acks = acks
        self.grace = grace
        self.window = window if window is not None else DeliveryWindow()
        self.origin = uuid.uuid4().hex[:16]
        self.is_ready = True
        self.is_live = True
        self.server: grpc.aio.Server | None = None
        self.port = 0
        self.draining = False
        self.deadline = math.inf
        self.duplicates = 0
        self.replies_rerouted = 0
        self.replies_lost = 0
        self.replies_unkept = 0
        self._streams: set[Stream] = set()
        self._channels: dict[str, Channel] = {}
        self._changed = asyncio.Event()
        self._async = inspect.iscoroutinefunction(handler)

    async def start(
        self,
        address: str = str(EXAMPLE_UPSTREAM),
        *,
        credentials: grpc.ServerCredentials | None = None,
    ) -> int:
        """Listen on ``address`` (port 0: any free port); returns the port. With
        ``credentials`` (see ``server_credentials``) it serves TLS only."""
        sizes = {
            "grpc.max_receive_message_length": MAX_MESSAGE,
            "grpc.max_send_message_length": self.limits.max_message,
        }
        options = [(key, sizes.get(key, value)) for key, value in SERVER_OPTIONS]
        self.server = grpc.aio.server(options=options)
        if self.batch:
            pb_grpc.add_UpstreamPeerServiceServicer_to_server(self, self.server)
        else:
            _add_original_only(self, self.server)
        try:
            if credentials is None:
                self.port = self.server.add_insecure_port(address)
            else:
                self.port = self.server.add_secure_port(address, credentials)
        except RuntimeError:  # grpc's "Failed to bind": the port is taken or not ours
            self.port = 0
        if not self.port:
            raise OSError(f"cannot listen on {address} (port in use?)")
        await self.server.start()
        return self.port

    async def serve(
        self,
        address: str = str(EXAMPLE_UPSTREAM),
        *,
        credentials: grpc.ServerCredentials | None = None,
    ) -> None:
        """Start, then ``run``: until SIGTERM or SIGINT, which drain it (``grace``)."""
        await self.start(address, credentials=credentials)
        await self.run()

    async def run(self) -> None:
        """Serve until SIGTERM or SIGINT (then drain, within ``grace``) or until stopped."""
        assert self.server is not None, "start() first"
        loop = asyncio.get_running_loop()
        signalled = asyncio.Event()
        installed = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, signalled.set)
            except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
                continue
            installed.append(sig)
        signal_seen = asyncio.create_task(signalled.wait())
        # never cancelled: cancelling grpc's wait_for_termination breaks its later shutdown
        terminated = asyncio.create_task(self.server.wait_for_termination())
        try:
            await asyncio.wait({signal_seen, terminated}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            signal_seen.cancel()
            for sig in installed:
                loop.remove_signal_handler(sig)
        if signalled.is_set():
            await self.drain()
        await terminated

    async def drain(self, grace: float | None = None) -> None:
        """Stop taking messages, finish and hand back (see the module's rules), then stop the
        server; at most ``grace`` seconds (default: the server's)."""
        self.is_ready = False
        if not self.draining:
            self.draining = True
            self.deadline = time.monotonic() + (self.grace if grace is None else grace)
            log.info("draining %d streams (grace %.1fs)", len(self._streams), self.grace)
            for stream in list(self._streams):
                stream.drain(self.deadline)
        while self._streams and (remaining := self.deadline - time.monotonic()) > 0:
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._changed.wait()
        if self._streams:
            log.warning("drain: %d streams open after the grace; stopping", len(self._streams))
        await self.stop(0)

    def stopping(self) -> bool:
        """Whether a drain has begun."""
        return self.draining

    async def stop(self, grace: float | None = 1.0) -> None:
        if self.server is not None:
            await self.server.stop(grace)

    # ready / live -----------------------------------------------------------------------

    async def ready(self, request: empty_pb2.Empty, context: Any) -> pb.ReadyResult:
        return pb.ReadyResult(time=now_text(), ready=self.is_ready)

    async def live(
        self, request_iterator: AsyncIterator[empty_pb2.Empty], context: Any
    ) -> AsyncIterator[pb.LiveResult]:
        async for _ in request_iterator:
            yield pb.LiveResult(time=now_text(), live=self.is_live)

    # data -------------------------------------------------------------------------------

    def stream_started(self, outbox: Outbox) -> None:
        """A data stream opened (a hook for subclasses; ``outbox`` is its replies')."""

    def stream_ended(self, outbox: Outbox) -> None:
        """A data stream ended (a hook for subclasses)."""

    async def bidirectionalStreaming(
        self, request_iterator: AsyncIterator[pb.InputStreamRequest], context: Any
    ) -> AsyncIterator[pb.OutputStreamRequest]:
        stream = OriginalStream(self)
        self._streams.add(stream)
        self.stream_started(stream.outbox)
        stream.consumer = asyncio.create_task(stream.consume(request_iterator))
        try:
            async for item in stream.replies():
                yield item
        finally:
            await _finish(stream.consumer)
            self._streams.discard(stream)
            self._changed.set()
            self.stream_ended(stream.outbox)

    async def batchStreaming(
        self, request_iterator: AsyncIterator[pb.InputBatch], context: Any
    ) -> AsyncIterator[pb.OutputBatch]:
        stream = BatchStream(self)
        self._streams.add(stream)
        self.stream_started(stream.outbox)
        stream.consumer = asyncio.create_task(stream.consume(request_iterator))
        try:
            async for batch in stream.batches():
                yield batch
        finally:
            await _finish(stream.consumer)
            self._ended(stream)
            self.stream_ended(stream.outbox)

    # reply channels ---------------------------------------------------------------------

    def _attach(self, channel_id: str, stream: BatchStream) -> Channel:
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

    def _pass_on(self, old: BatchStream, taken: Taken) -> None:
        """A superseded stream's last replies go to whatever stream serves its channel now."""
        for channel in self._channels.values():
            if channel.stream is not None and channel.stream is not old and taken.items:
                if channel.stream.superseded:
                    continue
                channel.stream.outbox.items.extend(taken.items)
                channel.stream.outbox.kick()
                return

    def finished_before(self, client_uuid: str, seq: int, stream: BatchStream, now: float) -> bool:
        """Whether a delivery id that comes again (on ``stream``) finished here already: in
        the window (streams that ended) or on another stream still open (a redelivery
        never comes on the stream that had it)."""
        if self.window.seen(client_uuid, seq, now):
            return True
        key = (client_uuid, seq)
        return any(
            other.finished_here(key)
            for other in self._streams
            if isinstance(other, BatchStream) and other is not stream and other.recent
        )

    def _ended(self, stream: BatchStream) -> None:
        self._streams.discard(stream)
        self._changed.set()
        if stream.recent:
            ids = [(handling[1], handling[2]) for handling in stream.recent]
            self.window.finished_all(ids, time.monotonic())
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
                s
                for s in self._streams
                if isinstance(s, BatchStream) and s.channel is not None and not s.draining
            ),
            None,
        )
        count = len(ledger)
        if target is None:
            if time.monotonic() - channel.lonely_since < REPLY_HOLD:
                asyncio.get_running_loop().call_later(RESEND_AFTER, self._orphaned, channel)
                return
            ledger.acked(ledger.next - 1)
            self.replies_lost += count
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
        self.replies_rerouted += count
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
            f"<UpstreamServer port={self.port} streams={len(self._streams)} "
            f"draining={self.draining} duplicates={self.duplicates}>"
        )


async def _finish(consumer: asyncio.Task[None] | None) -> None:
    if consumer is None:
        return
    consumer.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await consumer


def server_credentials(
    certificate_chain: bytes, private_key: bytes, client_ca: bytes | None = None
) -> grpc.ServerCredentials:
    """TLS for ``UpstreamServer.start(credentials=...)`` from PEM bytes; with ``client_ca``
    every node must present a client certificate that CA signed (mTLS)."""
    return grpc.ssl_server_credentials(
        [(private_key, certificate_chain)],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )


def _add_original_only(servicer: UpstreamServer, server: grpc.aio.Server) -> None:
    """Serve only the original three RPCs, as an upstream built from the original proto."""
    handlers: dict[str, Any] = {
        "bidirectionalStreaming": grpc.stream_stream_rpc_method_handler(
            servicer.bidirectionalStreaming,
            request_deserializer=pb.InputStreamRequest.FromString,
            response_serializer=pb.OutputStreamRequest.SerializeToString,
        ),
        "ready": grpc.unary_unary_rpc_method_handler(
            servicer.ready,
            request_deserializer=empty_pb2.Empty.FromString,
            response_serializer=pb.ReadyResult.SerializeToString,
        ),
        "live": grpc.stream_stream_rpc_method_handler(
            servicer.live,
            request_deserializer=empty_pb2.Empty.FromString,
            response_serializer=pb.LiveResult.SerializeToString,
        ),
    }
    generic = grpc.method_handlers_generic_handler(
        "upstream.grpc.service.UpstreamPeerService", handlers
    )
    server.add_generic_rpc_handlers((generic,))
