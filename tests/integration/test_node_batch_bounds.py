"""Batches between a real node and a real SDK upstream are bounded in count and bytes, both
ways; a message too large for one gRPC message is refused and counted, the stream stays up."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2

from paradoxplex.node.links.link import UpstreamLink
from paradoxplex.node.node import Node
from paradoxplex.shared.batches import DEFAULT_MAX_BYTES, ENVELOPE, MAX_MESSAGE, BatchLimits
from paradoxplex.upstream import Message, Outbox, UpstreamServer
from paradoxplex.wire import upstream_pb2 as pb
from paradoxplex.wire import upstream_pb2_grpc as pb_grpc
from tests.support.client import Client
from tests.support.eventually import eventually
from tests.support.node_harness import Recorder, running_node, sample, upstream_id

REPLIES = 600
REPLY_SIZE = 128 * 1024
BIG_BUFFER = 96 * 1024 * 1024


def numbered(index: int, size: int) -> bytes:
    return index.to_bytes(4, "big") + bytes([index % 251]) * (size - 4)


def burst(message: Message, out: Outbox) -> bool:
    """On ``burst``: queue REPLIES replies of REPLY_SIZE at once (75 MiB in all)."""
    if message.payload != b"burst":
        return False
    for index in range(REPLIES):
        assert out.reply(message.client_uuid, numbered(index, REPLY_SIZE))
    return True


@asynccontextmanager
async def upstream_and_node(
    recorder: Recorder, *, batch: bool = True, limits: BatchLimits | None = None, **node: Any
) -> AsyncIterator[tuple[UpstreamServer, Node, UpstreamLink]]:
    server = UpstreamServer(recorder, batch=batch, limits=limits or BatchLimits())
    await server.start("127.0.0.1:0")
    try:
        async with running_node(server.port, write_buffer=BIG_BUFFER, **node) as running:
            yield server, running, running.pool.links[upstream_id(server.port)]
    finally:
        await server.stop(0)


@pytest.mark.parametrize("batch", [True, False], ids=["batch", "original"])
async def test_a_burst_over_the_message_limit_arrives_whole(batch: bool) -> None:
    async with upstream_and_node(Recorder(rule=burst), batch=batch) as (_, node, link):
        since = link.tracker.since
        client = await Client.connect(node)
        try:
            await client.send(b"burst")
            received = await client.receive_exactly(REPLIES * REPLY_SIZE, within=60.0)
        finally:
            await client.aclose()
        replies = [received[at : at + REPLY_SIZE] for at in range(0, len(received), REPLY_SIZE)]
        assert replies == [numbered(index, REPLY_SIZE) for index in range(REPLIES)]
        assert link.tracker.since == since, "the stream broke and was opened again"
        assert link.batching is batch


def too_big_then_small(message: Message, out: Outbox) -> bool:
    if message.payload == b"too big":
        assert out.reply(message.client_uuid, b"x" * (2 * 1024 * 1024)) is False
        assert out.reply(message.client_uuid, b"small after") is True
        return True
    return False


@pytest.mark.parametrize("batch", [True, False], ids=["batch", "original"])
async def test_an_upstream_refuses_a_reply_too_large_and_goes_on(
    batch: bool, caplog: pytest.LogCaptureFixture
) -> None:
    limits = BatchLimits(max_bytes=64 * 1024, max_message=1024 * 1024)
    recorder = Recorder(rule=too_big_then_small)
    async with upstream_and_node(recorder, batch=batch, limits=limits) as (_, node, link):
        since = link.tracker.since
        client = await Client.connect(node)
        try:
            await client.send(b"too big")
            assert await client.receive_exactly(len(b"small after")) == b"small after"
            await client.round_trip(b"still served")
        finally:
            await client.aclose()
        assert link.tracker.since == since
    refusals = [r for r in caplog.records if r.name == "paradoxplex.upstream"]
    assert [r.levelname for r in refusals] == ["WARNING"]
    assert "refused a reply of 2097" in refusals[0].getMessage()


@pytest.mark.parametrize("batch", [True, False], ids=["batch", "original"])
async def test_the_node_drops_a_message_too_large_to_send_and_counts_it(
    batch: bool, caplog: pytest.LogCaptureFixture
) -> None:
    frame = b"y" * (MAX_MESSAGE - ENVELOPE)  # with its envelope, over one gRPC message
    recorder = Recorder()
    settings: dict[str, Any] = {"framing": "length", "max_frame": MAX_MESSAGE}
    async with upstream_and_node(recorder, batch=batch, **settings) as (_, node, link):
        since = link.tracker.since
        client = await Client.connect(node)
        try:
            await client.send(struct.pack(">I", len(frame)) + frame)
            await eventually(
                lambda: sample(node, "paradoxplex_drops_total", reason="message_too_large") == 1,
                timeout=30.0,
                message="the oversize message counted as a drop",
            )
            await client.send(struct.pack(">I", 5) + b"after")
            assert await client.receive_exactly(5) == b"after"
        finally:
            await client.aclose()
        assert link.tracker.since == since
        assert recorder.data == [b"after"]
    [line] = [r.getMessage() for r in caplog.records if "over the" in r.getMessage()]
    assert line.startswith(f"upstream {link.id}: dropped a message of {len(frame) + 128} bytes")


class BatchSizes(pb_grpc.UpstreamPeerServiceServicer):
    """A bare gRPC upstream that records the size of every batch the node sends it."""

    def __init__(self) -> None:
        self.batches: list[tuple[int, int]] = []  # (items, encoded bytes)

    async def ready(self, request: empty_pb2.Empty, context: Any) -> pb.ReadyResult:
        return pb.ReadyResult(ready=True)

    async def live(
        self, request_iterator: AsyncIterator[empty_pb2.Empty], context: Any
    ) -> AsyncIterator[pb.LiveResult]:
        async for _ in request_iterator:
            yield pb.LiveResult(live=True)

    async def bidirectionalStreaming(
        self, request_iterator: AsyncIterator[pb.InputStreamRequest], context: Any
    ) -> AsyncIterator[pb.OutputStreamRequest]:
        async for _ in request_iterator:  # not used: the node takes the batch path
            yield pb.OutputStreamRequest()

    async def batchStreaming(
        self, request_iterator: AsyncIterator[pb.InputBatch], context: Any
    ) -> AsyncIterator[pb.OutputBatch]:
        async for batch in request_iterator:
            if not batch.items:
                yield pb.OutputBatch()  # the node's probe
            else:
                self.batches.append((len(batch.items), batch.ByteSize()))

    @property
    def payload_bytes(self) -> int:
        return sum(size for _, size in self.batches)


async def test_the_node_bounds_its_batches_in_bytes() -> None:
    recorder = BatchSizes()
    server = grpc.aio.server()
    pb_grpc.add_UpstreamPeerServiceServicer_to_server(recorder, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with running_node(port) as node:
            client = await Client.connect(node)
            try:
                await client.send(b"z" * (8 * 1024 * 1024))
                await eventually(
                    lambda: recorder.payload_bytes >= 8 * 1024 * 1024,
                    timeout=30.0,
                    message="8 MiB of socket data at the upstream",
                )
            finally:
                await client.aclose()
    finally:
        await server.stop(0)
    assert max(size for _, size in recorder.batches) <= DEFAULT_MAX_BYTES
    assert len(recorder.batches) >= 8
