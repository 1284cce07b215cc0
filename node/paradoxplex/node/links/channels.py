"""gRPC channels to upstreams, and gRPC's errors translated once (``UpstreamUnavailable``).

Rules:
- Every channel sets the maximum message size both ways (``MAX_MESSAGE``) and a gentle
  keepalive: grpc-go servers answer pings faster than every 5 minutes with GOAWAY
  ``too_many_pings``; liveness is what the ``live`` RPC is for.
- TLS when the upstream's spec asks for it, checked against its ``server_name`` (else the
  host), with the node's CA and client certificate when given (else the system's CAs).
"""

from __future__ import annotations

from typing import Any

import grpc

from paradoxplex.shared.batches import MAX_MESSAGE
from paradoxplex.shared.errors import UpstreamUnavailable
from paradoxplex.shared.upstreams import UpstreamSpec

CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.max_send_message_length", MAX_MESSAGE),
    ("grpc.keepalive_time_ms", 300_000),
    ("grpc.keepalive_permit_without_calls", 0),
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 5_000),
]


def open_channel(
    spec: UpstreamSpec, credentials: grpc.ChannelCredentials | None
) -> grpc.aio.Channel:
    """The channel to an upstream: TLS when ``spec.tls`` (checked against ``server_name``,
    else the host), with ``credentials`` (else the system's CAs)."""
    address = str(spec.address)
    if not spec.tls:
        return grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
    options: list[tuple[str, Any]] = list(CHANNEL_OPTIONS)
    if spec.server_name:
        options.append(("grpc.ssl_target_name_override", spec.server_name))
    secure = credentials if credentials is not None else grpc.ssl_channel_credentials()
    return grpc.aio.secure_channel(address, secure, options=options)


async def read_message(call: Any, upstream_id: str) -> Any:
    """The next message of a stream; ``UpstreamUnavailable`` when it broke or ended."""
    try:
        message = await call.read()
    except grpc.aio.AioRpcError as error:
        raise UpstreamUnavailable(upstream_id, stream_failure(error)) from None
    if message is grpc.aio.EOF:
        raise UpstreamUnavailable(upstream_id, "upstream ended the stream")
    return message


def stream_failure(error: Exception) -> str:
    """Why a stream broke, in a few words (never the payload)."""
    if isinstance(error, grpc.aio.AioRpcError):
        return f"stream broken: {error.code().name}"
    return "stream broken"
