"""An upstream written against the ORIGINAL contract only, run as its own process.

Usage: ``python serve.py WIRE_DIR PACKAGE [HOST:PORT]``. ``WIRE_DIR/PACKAGE`` holds the code
``grpc_tools.protoc`` generated from ``upstream_original.proto``; nothing of paradoxplex is
imported, so the node is tested against exactly what an original upstream sees and sends.

It prints ``listening PORT``, then one JSON line per message it receives:
``{"uuid", "payload" (base64), "unknown" (unknown fields, i.e. extensions), "sent" (hex of
the reply, or null)}``. Replies: a payload ``broadcast:<all|active|inactive>:<rest>`` is
broadcast (the target set through the oneof, so BROADCAST_ALL = 0 is on the wire); any other
payload is echoed to its sender.
"""

from __future__ import annotations

import asyncio
import base64
import importlib
import json
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf import unknown_fields


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def report(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


def make_servicer(pb: Any, pb_grpc: Any) -> Any:
    targets = {
        b"all": pb.BROADCAST_ALL,
        b"active": pb.BROADCAST_ACTIVE,
        b"inactive": pb.BROADCAST_NOT_ACTIVE,
    }

    def answer(request: Any) -> Any:
        if request.payload.startswith(b"broadcast:"):
            _, target, rest = request.payload.split(b":", 2)
            reply = pb.OutputStreamRequest(time=now(), broadcast=targets[target], payload=rest)
            assert reply.WhichOneof("target") == "broadcast"
            return reply
        return pb.OutputStreamRequest(
            time=now(), client_uuid=request.client_uuid, payload=request.payload
        )

    class Original(pb_grpc.UpstreamPeerServiceServicer):  # type: ignore[misc]
        async def ready(self, request: Any, context: Any) -> Any:
            return pb.ReadyResult(time=now(), ready=True)

        async def live(self, requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
            async for _ in requests:
                yield pb.LiveResult(time=now(), live=True)

        async def bidirectionalStreaming(
            self, requests: AsyncIterator[Any], context: Any
        ) -> AsyncIterator[Any]:
            async for request in requests:
                reply = answer(request)
                report(
                    uuid=request.client_uuid,
                    payload=base64.b64encode(request.payload).decode(),
                    unknown=len(unknown_fields.UnknownFieldSet(request)),
                    sent=reply.SerializeToString().hex(),
                )
                yield reply

    return Original()


async def serve(wire_dir: str, package: str, address: str) -> None:
    sys.path.insert(0, wire_dir)
    pb = importlib.import_module(f"{package}.upstream_original_pb2")
    pb_grpc = importlib.import_module(f"{package}.upstream_original_pb2_grpc")
    server = grpc.aio.server()
    pb_grpc.add_UpstreamPeerServiceServicer_to_server(make_servicer(pb, pb_grpc), server)
    port = server.add_insecure_port(address)
    await server.start()
    print(f"listening {port}", flush=True)
    try:
        await server.wait_for_termination()
    finally:
        await server.stop(0)


def main() -> None:
    wire_dir, package = sys.argv[1], sys.argv[2]
    address = sys.argv[3] if len(sys.argv) > 3 else "127.0.0.1:0"
    asyncio.run(serve(wire_dir, package, address))


if __name__ == "__main__":
    main()
