"""The upstream SDK's gRPC servicer: the original RPCs, the batch RPC, ready and live.

Limits (``paradoxplex.shared.batches``): the server sends and receives gRPC messages of up to
``MAX_MESSAGE`` (64 MiB); replies go back in batches of at most 512 replies and 1 MiB (a
larger reply alone); a reply too large for one gRPC message is refused by ``Outbox``
(``reply`` / ``broadcast`` answer False, ``Outbox.refused`` counts it, a WARNING says so)
and the stream goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import empty_pb2

from paradoxplex.shared.batches import MAX_MESSAGE, BatchLimits
from paradoxplex.shared.timestamps import timestamp
from paradoxplex.wire import upstream_pb2 as pb
from paradoxplex.wire import upstream_pb2_grpc as pb_grpc

log = logging.getLogger("paradoxplex.upstream")

BROADCASTS = {
    "all": pb.BROADCAST_ALL,
    "active": pb.BROADCAST_ACTIVE,
    "paused": pb.BROADCAST_NOT_ACTIVE,
    "inactive": pb.BROADCAST_NOT_ACTIVE,  # the original's word for paused
}
BATCH_LIMITS = BatchLimits()
SERVER_OPTIONS = [
    # as the node's channel; ``UpstreamServer(limits=...)`` sets the send limit
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.max_send_message_length", MAX_MESSAGE),
    # accept gentle client keepalive pings
    ("grpc.http2.min_ping_interval_without_data_ms", 60_000),
    # a taken port is an error, not a second server silently sharing it
    ("grpc.so_reuseport", 0),
]


class OutboxFull(Exception):
    """One message made a handler queue ``max_pending`` more replies. (While ``max_pending``
    replies wait for the node, the next message waits too: that is backpressure, no error.)"""


@dataclass(frozen=True, slots=True)
class Message:
    """One message from a socket, or a lifecycle event (``event`` set, empty payload)."""

    client_uuid: str
    payload: bytes
    time: str
    event: str = ""  # "", "connected" or "disconnected"
    remote_address: str = ""
    node_id: str = ""
    reason: str = ""

    @classmethod
    def from_request(cls, request: pb.InputStreamRequest) -> Message:
        if not request.HasField("event"):
            return cls(request.client_uuid, request.payload, request.time)
        event = request.event
        kind = {pb.SocketEvent.CONNECTED: "connected", pb.SocketEvent.DISCONNECTED: "disconnected"}
        return cls(
            request.client_uuid,
            request.payload,
            request.time,
            kind.get(event.kind, "unknown"),
            event.remote_address,
            event.node_id,
            event.reason,
        )


class Outbox:
    """Replies of one stream, bounded; sent back in arrival order."""

    def __init__(self, max_pending: int = 10_000, *, limits: BatchLimits = BATCH_LIMITS) -> None:
        self.max_pending = max_pending
        self.limits = limits
        self.items: list[pb.OutputStreamRequest] = []
        self.refused = 0
        self.probes = 0
        self.closed = False
        self._wakeup = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()

    def _put(self, item: pb.OutputStreamRequest) -> bool:
        size = item.ByteSize()
        if not self.limits.fits(size):
            self.refused += 1
            log.warning(
                "refused a reply of %d bytes (to %s): over the %d-byte limit of one gRPC message",
                size,
                item.client_uuid or "a broadcast",
                self.limits.max_single,
            )
            return False
        if len(self.items) >= 2 * self.max_pending:  # one message made max_pending replies
            raise OutboxFull(f"{len(self.items)} replies pending")
        self.items.append(item)
        self._wakeup.set()
        if len(self.items) >= self.max_pending:
            self._room.clear()
        return True

    def reply(self, client_uuid: str, payload: bytes) -> bool:
        """Send ``payload`` to one socket, whichever node holds it; False when the reply is
        too large for one gRPC message (refused, counted in ``refused``, logged)."""
        return self._put(
            pb.OutputStreamRequest(time=_now(), client_uuid=client_uuid, payload=payload)
        )

    def broadcast(self, payload: bytes, *, target: str = "all", label: str = "") -> bool:
        """Send to every socket (``all``), the ``active`` or the ``paused`` ones (``inactive``,
        the original's word, is ``paused``), fleet-wide;
        False when refused as too large (see ``reply``)."""
        return self._put(
            pb.OutputStreamRequest(
                time=_now(), broadcast=BROADCASTS[target], payload=payload, broadcast_label=label
            )
        )

    def _probe(self) -> None:
        self.probes += 1
        self._wakeup.set()

    def _close(self) -> None:
        self.closed = True
        self._wakeup.set()

    async def wait_room(self) -> None:
        await self._room.wait()

    async def take(self) -> list[pb.OutputStreamRequest] | None:
        """What is pending (waiting for something); None once closed and empty."""
        while not self.items and not self.probes:
            if self.closed:
                return None
            self._wakeup.clear()
            await self._wakeup.wait()
        items, self.items = self.items, []
        self._room.set()
        return items


Handler = Callable[[Message, Outbox], Awaitable[None] | None]


def _now() -> str:
    return timestamp(time.time())


class UpstreamServer(pb_grpc.UpstreamPeerServiceServicer):
    """A gRPC server that hands each socket message to ``handler``."""

    def __init__(
        self,
        handler: Handler,
        *,
        max_pending: int = 10_000,
        batch: bool = True,
        limits: BatchLimits = BATCH_LIMITS,
    ) -> None:
        self.handler = handler
        self.max_pending = max_pending
        self.limits = limits
        self.batch = batch
        self.is_ready = True
        self.is_live = True
        self.server: grpc.aio.Server | None = None
        self.port = 0
        self._async = inspect.iscoroutinefunction(handler)

    async def start(
        self,
        address: str = "127.0.0.1:45888",
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
        address: str = "127.0.0.1:45888",
        *,
        credentials: grpc.ServerCredentials | None = None,
    ) -> None:
        await self.start(address, credentials=credentials)
        assert self.server is not None
        await self.server.wait_for_termination()

    async def stop(self, grace: float | None = 1.0) -> None:
        if self.server is not None:
            await self.server.stop(grace)

    # ready / live -----------------------------------------------------------------------

    async def ready(self, request: empty_pb2.Empty, context: Any) -> pb.ReadyResult:
        return pb.ReadyResult(time=_now(), ready=self.is_ready)

    async def live(
        self, request_iterator: AsyncIterator[empty_pb2.Empty], context: Any
    ) -> AsyncIterator[pb.LiveResult]:
        async for _ in request_iterator:
            yield pb.LiveResult(time=_now(), live=self.is_live)

    # data -------------------------------------------------------------------------------

    async def _consume(
        self, requests: AsyncIterator[Any], outbox: Outbox, *, batched: bool
    ) -> None:
        handle = self.handler
        try:
            async for request in requests:
                if batched:
                    items = request.items
                    if not items:  # the node's probe: answer with an empty batch
                        outbox._probe()
                        continue
                else:
                    items = (request,)
                for item in items:
                    if len(outbox.items) >= outbox.max_pending:
                        await outbox.wait_room()  # backpressure: the next message waits
                    result = handle(Message.from_request(item), outbox)
                    if result is not None:
                        await result
        except Exception:
            log.exception("upstream handler failed; ending the stream")
            raise
        finally:
            outbox._close()

    async def bidirectionalStreaming(
        self, request_iterator: AsyncIterator[pb.InputStreamRequest], context: Any
    ) -> AsyncIterator[pb.OutputStreamRequest]:
        outbox = Outbox(self.max_pending, limits=self.limits)
        consumer = asyncio.create_task(self._consume(request_iterator, outbox, batched=False))
        try:
            while (items := await outbox.take()) is not None:
                for item in items:
                    yield item
        finally:
            await _finish(consumer)

    async def batchStreaming(
        self, request_iterator: AsyncIterator[pb.InputBatch], context: Any
    ) -> AsyncIterator[pb.OutputBatch]:
        outbox = Outbox(self.max_pending, limits=self.limits)
        consumer = asyncio.create_task(self._consume(request_iterator, outbox, batched=True))
        try:
            while (items := await outbox.take()) is not None:
                while outbox.probes:
                    outbox.probes -= 1
                    yield pb.OutputBatch()
                start = 0
                for length in outbox.limits.split([item.ByteSize() for item in items]):
                    yield pb.OutputBatch(items=items[start : start + length])
                    start += length
        finally:
            await _finish(consumer)


async def _finish(consumer: asyncio.Task[None]) -> None:
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
