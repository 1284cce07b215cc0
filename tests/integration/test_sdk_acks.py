"""The SDK's side of acknowledged delivery, over a real gRPC stream driven by hand (the node's
part of the protocol written out: probe with a channel, numbered messages, reply acks, drain).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from paradoxplex.upstream import Message, Outbox, UpstreamServer
from paradoxplex.wire import upstream_pb2 as pb
from paradoxplex.wire import upstream_pb2_grpc as pb_grpc
from tests.support.eventually import eventually

CHANNEL = "node-1/abc"


class Handler:
    """Echoes, except ``quiet`` (no reply) and ``slow`` (waits for ``release``)."""

    def __init__(self) -> None:
        self.ran: list[tuple[str, int, int]] = []
        self.release = asyncio.Event()
        self.started_slow = asyncio.Event()

    async def __call__(self, message: Message, out: Outbox) -> None:
        self.ran.append((message.client_uuid, message.seq, message.attempt))
        if message.payload == b"slow":
            self.started_slow.set()
            await self.release.wait()
        if message.payload != b"quiet":
            out.reply(message.client_uuid, message.payload)


@contextlib.asynccontextmanager
async def sdk(**options: Any) -> AsyncIterator[tuple[UpstreamServer, Handler, Any]]:
    handler = Handler()
    server = UpstreamServer(handler, **options)
    port = await server.start("127.0.0.1:0")
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield server, handler, pb_grpc.UpstreamPeerServiceStub(channel)
    finally:
        handler.release.set()
        await channel.close()
        await server.stop(0)


def message(seq: int, payload: bytes = b"hi", *, attempt: int = 1, uuid: str = "s1") -> Any:
    return pb.InputStreamRequest(client_uuid=uuid, payload=payload, seq=seq, attempt=attempt)


async def opened(stub: Any, channel: str = CHANNEL) -> tuple[Any, pb.OutputBatch]:
    call = stub.batchStreaming()
    await call.write(pb.InputBatch(channel=channel))
    answer = await asyncio.wait_for(call.read(), 5)
    return call, answer


async def read(call: Any) -> pb.OutputBatch:
    batch = await asyncio.wait_for(call.read(), 5)
    assert batch is not grpc.aio.EOF
    return batch  # type: ignore[no-any-return]


async def test_the_probe_is_answered_with_an_origin_only_when_acknowledging() -> None:
    async with sdk() as (_, _, stub):
        call, answer = await opened(stub)
        assert answer.origin
        call.cancel()
    async with sdk(acks=False) as (_, _, stub):
        call, answer = await opened(stub)
        assert answer.origin == ""
        call.cancel()


async def test_a_reply_acknowledges_its_message_and_a_quiet_handler_is_acked_explicitly() -> None:
    async with sdk() as (_, _, stub):
        call, _ = await opened(stub)
        await call.write(pb.InputBatch(items=[message(1, b"echo me")]))
        batch = await read(call)
        [reply] = batch.items
        assert (reply.payload, reply.cause_seq, batch.first_reply) == (b"echo me", 1, 1)
        assert list(batch.acks) == []
        await call.write(pb.InputBatch(items=[message(2, b"quiet")]))
        batch = await read(call)
        assert list(batch.items) == []
        assert [(ack.client_uuid, ack.seq) for ack in batch.acks] == [("s1", 2)]
        call.cancel()


@pytest.mark.parametrize("first_stream", ["still open", "ended"])
async def test_a_redelivery_of_a_finished_id_is_acknowledged_without_running_again(
    first_stream: str,
) -> None:
    """The node delivers again on a new stream (its link broke): the first stream may still
    look open here (a cut connection), or have ended; either way the id is known."""
    async with sdk() as (server, handler, stub):
        first, _ = await opened(stub)
        await first.write(pb.InputBatch(items=[message(1, b"quiet")]))
        await read(first)
        if first_stream == "ended":
            first.cancel()
            await eventually(lambda: len(server.window) == 1, message="the window has it")
        second, _ = await opened(stub)
        await second.write(pb.InputBatch(items=[message(1, b"quiet", attempt=2)]))
        batch = await read(second)
        assert [(ack.client_uuid, ack.seq) for ack in batch.acks] == [("s1", 1)]
        assert batch.duplicates == 1
        assert server.duplicates == 1
        assert handler.ran == [("s1", 1, 1)]
        await second.write(pb.InputBatch(items=[message(2, b"new", attempt=2)]))
        await read(second)
        assert handler.ran[-1] == ("s1", 2, 2)  # not finished here before: run
        first.cancel()
        second.cancel()


async def test_replies_not_acknowledged_are_sent_again_with_their_numbers_on_the_next_stream() -> (
    None
):
    async with sdk() as (_, _, stub):
        first, answer = await opened(stub)
        await first.write(pb.InputBatch(items=[message(1, b"one"), message(2, b"two")]))
        got: list[pb.OutputStreamRequest] = []
        while len(got) < 2:
            got += (await read(first)).items
        first.cancel()  # gone before the node acknowledged any reply
        second, again = await opened(stub)
        assert again.origin == answer.origin  # the same numbering
        resent = await read(second)
        assert resent.first_reply == 1
        assert [item.payload for item in resent.items] == [b"one", b"two"]
        await second.write(pb.InputBatch(reply_ack=2))
        await second.write(pb.InputBatch(items=[message(3, b"three")]))
        batch = await read(second)
        assert (batch.first_reply, [item.payload for item in batch.items]) == (3, [b"three"])
        second.cancel()
        third, _ = await opened(stub)
        resent = await read(third)  # 3 was never acknowledged: sent again, 1 and 2 not
        assert (resent.first_reply, [item.payload for item in resent.items]) == (3, [b"three"])
        await third.write(pb.InputBatch(reply_ack=3))
        await third.write(pb.InputBatch(items=[message(4, b"four")]))
        batch = await read(third)
        assert batch.first_reply == 4
        third.cancel()


async def test_a_drain_asked_by_the_node_finishes_answers_and_ends_the_stream() -> None:
    async with sdk() as (server, handler, stub):
        call, _ = await opened(stub)
        await call.write(pb.InputBatch(items=[message(1, b"slow")]))
        await asyncio.wait_for(handler.started_slow.wait(), 5)
        await call.write(pb.InputBatch(items=[message(2, b"never started")], drain=True))
        handler.release.set()  # (the request is read once the running handler returns)
        draining, replies = False, list[tuple[bytes, int, int]]()
        while not (draining and replies):
            batch = await read(call)
            draining = draining or batch.draining
            replies += [(item.payload, item.cause_seq, batch.first_reply) for item in batch.items]
        assert [(payload, cause) for payload, cause, _ in replies] == [(b"slow", 1)]
        await call.write(pb.InputBatch(reply_ack=replies[0][2]))
        assert await asyncio.wait_for(call.read(), 5) is grpc.aio.EOF  # ended, OK
        assert [seq for _, seq, _ in handler.ran] == [1]  # 2 is left for the node
        assert server.is_ready  # only that stream drained


async def test_a_server_drain_stops_taking_hands_back_and_stops_within_its_grace() -> None:
    async with sdk(grace=5.0) as (server, handler, stub):
        call, _ = await opened(stub)
        await call.write(
            pb.InputBatch(items=[message(1, b"slow"), message(2, b"x"), message(3, b"y")])
        )
        await asyncio.wait_for(handler.started_slow.wait(), 5)
        draining = asyncio.create_task(server.drain())
        notice = await read(call)
        assert notice.draining
        assert not server.is_ready
        handler.release.set()
        batch = await read(call)
        assert [item.cause_seq for item in batch.items] == [1]
        await call.write(pb.InputBatch(reply_ack=batch.first_reply))
        await asyncio.wait_for(draining, 5)
        assert [seq for _, seq, _ in handler.ran] == [1]


async def test_a_drain_ends_at_its_grace_even_if_the_node_never_acknowledges() -> None:
    async with sdk(grace=0.3) as (server, _, stub):
        call, _ = await opened(stub)
        await call.write(pb.InputBatch(items=[message(1, b"answer")]))
        await read(call)
        started = asyncio.get_running_loop().time()
        await asyncio.wait_for(server.drain(), 5)
        assert asyncio.get_running_loop().time() - started < 2.0
        call.cancel()


@pytest.mark.parametrize("acks", [True, False])
async def test_unnumbered_messages_are_run_and_never_acknowledged(acks: bool) -> None:
    async with sdk(acks=acks) as (_, handler, stub):
        call, _ = await opened(stub, channel="")
        await call.write(
            pb.InputBatch(items=[pb.InputStreamRequest(client_uuid="s", payload=b"p")])
        )
        batch = await read(call)
        assert (batch.first_reply, list(batch.acks), batch.items[0].cause_seq) == (0, [], 0)
        assert handler.ran == [("s", 0, 0)]
        call.cancel()
