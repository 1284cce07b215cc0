"""Upstreams misbehaving: dying mid-stream, answering sockets that do not exist, not ready
and breaking their stream (one backoff across both)."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid as uuidlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from google.protobuf import empty_pb2

from paradoxplex.shared.retry import UPSTREAM_LINK
from paradoxplex.upstream import Message, Outbox, UpstreamServer
from paradoxplex.wire import upstream_pb2 as pb
from paradoxplex.wire import upstream_pb2_grpc as pb_grpc
from tests.support.eventually import eventually
from tests.support.node_harness import (
    Collector,
    Recorder,
    clients,
    running_node,
    sample,
    start_upstream,
    upstream_id,
)

PAD = b"x" * 16 * 1024
ROUND = 200


def numbered(first: int, count: int) -> tuple[bytes, set[bytes]]:
    """``count`` line frames ``NNNNNNxxx…`` and the set of their ids."""
    ids = {f"{n:06d}".encode() for n in range(first, first + count)}
    return b"".join(i + PAD + b"\n" for i in sorted(ids)), ids


def short_echo(message: Message, out: Outbox) -> bool:
    """Answer only the id, so that what comes back stays small."""
    out.reply(message.client_uuid, message.payload[:6] + b"|")
    return True


def answered(collector: Collector) -> set[bytes]:
    return set(collector.tokens(b"|"))


async def test_an_upstream_dying_mid_stream_loses_nothing_it_had_not_taken() -> None:
    """A stalled upstream makes its link queue up; when it dies, the queue moves over."""
    never = asyncio.Event()

    async def stalling(message: Message, out: Outbox) -> None:
        await never.wait()

    dying = UpstreamServer(stalling)
    await dying.start("127.0.0.1:0")
    healthy, _ = await start_upstream(Recorder(rule=short_echo))
    try:
        async with (
            running_node(dying.port, healthy.port, framing="line") as node,
            clients(node, 1) as (client,),
        ):
            collector = Collector(client)
            link = node.pool.links[upstream_id(dying.port)]

            def out_to_dying() -> float:
                return sample(
                    node,
                    "paradoxplex_upstream_messages_total",
                    upstream=upstream_id(dying.port),
                    direction="out",
                )

            def read_all(count: int) -> Callable[[], bool]:
                return lambda: sample(node, "paradoxplex_messages_in_total") == count

            before_ids: set[bytes] = set()
            for number in range(30):  # until gRPC's buffers towards the stalled one are full
                data, ids = numbered(number * ROUND, ROUND)
                before_ids |= ids
                await client.send(data)
                await eventually(read_all(len(before_ids)), message="the node read them")
                if link.queue:
                    break
            queued = len(link.queue)
            assert queued > 0, "the stalled link never queued anything"
            await dying.stop(0)
            await eventually(lambda: not link.in_rotation, message="the dead upstream leaves")
            taken = out_to_dying()
            # Only what the dying upstream had taken off the node's queue may be missing.
            await eventually(
                lambda: len(answered(collector)) >= len(before_ids) - taken,
                message="everything the dead upstream had not taken is answered",
            )
            after, after_ids = numbered(len(before_ids), 500)
            await client.send(after)
            await eventually(
                lambda: after_ids <= answered(collector),
                message="every message sent after the failure is answered",
            )
            missing = before_ids - answered(collector)
            assert len(missing) <= taken
            assert sample(node, "paradoxplex_drops_total", reason="socket_closed") == 0
            await collector.stop()
    finally:
        await dying.stop(0)
        await healthy.stop(0)


def stray(message: Message, out: Outbox) -> bool:
    if message.payload == b"stray":
        out.reply(str(uuidlib.uuid4()), b"for nobody")
    return False


async def test_a_reply_for_an_unknown_socket_is_counted_and_dropped() -> None:
    server, _ = await start_upstream(Recorder(rule=stray))
    try:
        async with running_node(server.port) as node, clients(node, 1) as (client,):
            await client.round_trip(b"stray")
            await eventually(
                lambda: sample(node, "paradoxplex_drops_total", reason="unknown_socket") == 1,
                message="the stray reply is counted",
            )
            await client.round_trip(b"still working")
            assert len(node.sessions) == 1
    finally:
        await server.stop(0)


class Flaky(pb_grpc.UpstreamPeerServiceServicer):
    """A bare upstream: ``ready`` answers ready=false except on the calls ``ready_on``
    (1-based); its first batch stream ends right after the probe, later ones stay open."""

    def __init__(self, ready_on: set[int]) -> None:
        self.ready_on = ready_on
        self.asked: list[float] = []  # when each ready call arrived
        self.batch_streams = 0

    async def ready(self, request: empty_pb2.Empty, context: Any) -> pb.ReadyResult:
        self.asked.append(time.monotonic())
        return pb.ReadyResult(ready=len(self.asked) in self.ready_on)

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
        self.batch_streams += 1
        first = self.batch_streams == 1
        async for _ in request_iterator:
            yield pb.OutputBatch()  # the node's probe (nothing else is sent here)
            if first:
                return


async def test_ready_checks_and_a_broken_stream_share_one_backoff() -> None:
    """Waits between tries follow one series (0.2, 0.4, … s), started over once ready: after
    a break the next failed ready check waits 0.4 s, not 0.2 s again (no stacked backoffs)."""
    upstream = Flaky(ready_on={3, 5})
    server = grpc.aio.server()
    pb_grpc.add_UpstreamPeerServiceServicer_to_server(upstream, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with running_node(port, wait_ready=False) as node:
            link = node.pool.links[upstream_id(port)]
            await eventually(
                lambda: len(upstream.asked) == 5 and link.in_rotation,
                timeout=15.0,
                message="ready on the fifth check, after a break",
            )
            assert upstream.batch_streams == 2
            assert link.backoff.failures == 0
        gaps = [later - earlier for earlier, later in itertools.pairwise(upstream.asked)]
        # not ready, not ready, ready (the stream breaks at once), not ready, ready
        least = [UPSTREAM_LINK.bounds(failures)[0] for failures in (1, 2, 1, 2)]
        assert least == [0.2, 0.4, 0.2, 0.4]
        assert all(gap >= low - 0.01 for gap, low in zip(gaps, least, strict=True)), gaps
    finally:
        await server.stop(0)
