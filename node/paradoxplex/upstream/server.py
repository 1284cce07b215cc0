"""The upstream SDK's gRPC server: the original RPCs, the batch RPC, ready and live; start,
run until a signal, drain, stop.

Rules:
- Limits (``paradoxplex.shared.batches``): the server sends and receives gRPC messages of up
  to ``MAX_MESSAGE`` (64 MiB); replies go back in batches of at most 512 replies and 1 MiB (a
  larger reply alone); a reply too large for one gRPC message is refused by ``Outbox``.
- Each call is a stream (``streams.py``): handlers run one at a time per stream, in the
  order the messages arrived.
- Acknowledged delivery (the batch RPC, when the node names a reply channel in its probe and
  ``acks`` is on): the probe is answered with this process's ``origin``; numbered messages
  are acknowledged as the ``Outbox`` says; a redelivery of an id finished within the
  window (the last 65,536 ids of each open stream, and of the streams that ended within 5
  minutes: ``DeliveryWindow``) is acknowledged without running the handler and counted
  (``duplicates``, reported to the node). Replies are numbered per channel (one node
  incarnation) and kept until the node takes them (``channels.py``), handed to another
  stream after ``RESEND_AFTER`` seconds (5) without one (``replies_rerouted``), dropped
  after ``REPLY_HOLD`` (60) with none at all (``replies_lost``); past ``max_pending`` kept
  replies the oldest are no longer kept (``replies_unkept``).
- Draining (SIGTERM or SIGINT under ``run``/``serve``, unless the process started with that
  signal ignored; ``drain()``; or the node's drain of one
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
import logging
import math
import signal
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf import empty_pb2

from paradoxplex.shared.batches import MAX_MESSAGE, BatchLimits
from paradoxplex.shared.dedup import DeliveryWindow
from paradoxplex.shared.upstreams import EXAMPLE_UPSTREAM, UPSTREAM_GRACE
from paradoxplex.upstream.channels import ReplyChannels
from paradoxplex.upstream.outbox import (
    BATCH_LIMITS,
    BROADCASTS,
    MAX_PENDING,
    Handler,
    Message,
    Outbox,
    OutboxFull,
    now_text,
)
from paradoxplex.upstream.streams import BatchStream, OriginalStream, Stream, finish
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
SERVER_OPTIONS = [
    # as the node's channel; ``UpstreamServer(limits=...)`` sets the send limit
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.max_send_message_length", MAX_MESSAGE),
    # accept gentle client keepalive pings
    ("grpc.http2.min_ping_interval_without_data_ms", 60_000),
    # a taken port is an error, not a second server silently sharing it
    ("grpc.so_reuseport", 0),
]


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
        self.channels = ReplyChannels(self.origin, max_pending=max_pending)
        self._streams: set[Stream] = set()
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
            if signal.getsignal(sig) is signal.SIG_IGN:  # started ignoring it (nohup, `cmd &`
                continue  # in a script: `make run`'s Ctrl-C is for the node): keep ignoring it
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
            await finish(stream.consumer)
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
            await finish(stream.consumer)
            self._ended(stream)
            self.stream_ended(stream.outbox)

    # de-duplication and reply channels -----------------------------------------------------

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
        self.channels.detach(stream)

    @property
    def replies_rerouted(self) -> int:
        """Kept replies sent through another node's stream (theirs did not come back)."""
        return self.channels.rerouted

    @property
    def replies_lost(self) -> int:
        """Kept replies dropped: no stream to any node for ``REPLY_HOLD`` seconds."""
        return self.channels.lost

    @property
    def replies_unkept(self) -> int:
        """Replies no longer kept past ``max_pending`` per channel (at-most-once for them)."""
        return self.channels.unkept

    def __repr__(self) -> str:
        return (
            f"<UpstreamServer port={self.port} streams={len(self._streams)} "
            f"draining={self.draining} duplicates={self.duplicates}>"
        )


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
