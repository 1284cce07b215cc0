"""A node's side of acknowledged delivery, with real gRPC upstreams in this process: what it
keeps, what it delivers again (in order per socket, within max-deliveries), what it counts
when a bound bites, and the reply numbers it drops."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc

from paradoxplex.upstream import Message, Outbox, UpstreamServer
from paradoxplex.wire import upstream_pb2 as pb
from paradoxplex.wire import upstream_pb2_grpc as pb_grpc
from tests.support.client import Client
from tests.support.eventually import eventually
from tests.support.node_harness import Recorder, running_node, sample, start_upstream, upstream_id


def lines(first: int, count: int) -> list[bytes]:
    return [b"%06d" % n for n in range(first, first + count)]


async def test_an_upstream_without_acknowledgements_gets_unnumbered_messages() -> None:
    recorder = Recorder()
    server = UpstreamServer(recorder, acks=False)
    port = await server.start("127.0.0.1:0")
    try:
        async with running_node(port) as node:
            client = await Client.connect(node)
            try:
                await client.round_trip(b"hello")
            finally:
                await client.aclose()
            assert [(m.seq, m.attempt) for m in recorder.messages] == [(0, 0)]
            assert sample(node, "paradoxplex_unacked_messages") == 0
    finally:
        await server.stop(0)


async def test_messages_are_numbered_per_socket_and_released_once_answered() -> None:
    server, recorder = await start_upstream()
    try:
        async with running_node(server.port, framing="line") as node:
            client = await Client.connect(node, collect=True)
            try:
                await client.send(b"a\nb\nc\n")
                await client.expect(b"c")
            finally:
                await client.aclose()
            assert [(m.payload, m.seq, m.attempt) for m in recorder.messages] == [
                (b"a", 1, 1),
                (b"b", 2, 1),
                (b"c", 3, 1),
            ]
            await eventually(lambda: sample(node, "paradoxplex_unacked_messages") == 0)
    finally:
        await server.stop(0)


async def test_past_the_link_bound_the_excess_is_counted_at_most_once() -> None:
    never = asyncio.Event()

    async def stalled(message: Message, out: Outbox) -> None:
        await never.wait()

    server = UpstreamServer(stalled)
    port = await server.start("127.0.0.1:0")
    try:
        async with running_node(port, framing="line", max_unacked=3) as node:
            client = await Client.connect(node)
            try:
                await client.send(b"".join(line + b"\n" for line in lines(0, 10)))

                def sent() -> bool:
                    counts = node.pool.links[upstream_id(port)].counts
                    return counts.sent == 10

                await eventually(sent, message="all ten written")
                assert sample(node, "paradoxplex_unacked_messages") == 3
                bitten = sample(node, "paradoxplex_at_most_once_total", reason="link_bound")
                assert bitten == 7
            finally:
                await client.aclose()
    finally:
        never.set()
        await server.stop(0)


def echo_line(message: Message, out: Outbox) -> None:
    if not message.event:
        out.reply(message.client_uuid, message.payload + b"\n")


async def slow_echo_line(message: Message, out: Outbox) -> None:
    await asyncio.sleep(0.001)  # keeps a few messages in flight at the upstream
    echo_line(message, out)


async def test_with_sticky_routing_a_socket_keeps_its_order_across_its_upstreams_drain() -> None:
    """The socket's upstream drains (as on SIGTERM) while it holds some of the socket's
    messages and the node holds more: those it did not start go to the other upstream first,
    then the rest; every line comes back once, in order."""
    first = UpstreamServer(slow_echo_line, grace=5.0)
    second = UpstreamServer(slow_echo_line, grace=5.0)
    ports = [await first.start("127.0.0.1:0"), await second.start("127.0.0.1:0")]
    try:
        async with running_node(*ports, framing="line", routing="sticky") as node:
            client = await Client.connect(node, collect=True)
            try:
                sent = lines(0, 1500)
                await client.send(b"".join(line + b"\n" for line in sent[:500]))
                await client.expect(b"\n", times=50, within=10)
                busy = node.pool.links[upstream_id(ports[0])].counts.sent > 0
                server = first if busy else second  # the one the socket sticks to
                draining = asyncio.create_task(server.drain())
                await client.send(b"".join(line + b"\n" for line in sent[500:]))
                await client.expect(b"\n", times=len(sent), within=20)
                await draining
                assert client.tokens(b"\n") == sent
            finally:
                await client.aclose()
    finally:
        await first.stop(0)
        await second.stop(0)


async def test_a_message_that_breaks_every_stream_is_dropped_after_max_deliveries() -> None:
    """``poison`` makes the handler raise, which ends the stream: delivered again each time,
    then dropped (counted, logged with its socket); other sockets are answered throughout."""

    def handler(message: Message, out: Outbox) -> None:
        if message.payload == b"poison":
            raise RuntimeError("the handler cannot take this one")
        if not message.event:
            out.reply(message.client_uuid, message.payload)

    servers = [UpstreamServer(handler), UpstreamServer(handler)]
    ports = [await server.start("127.0.0.1:0") for server in servers]
    try:
        async with running_node(*ports, max_deliveries=3) as node:
            poisoned = await Client.connect(node, collect=True)
            other = await Client.connect(node, collect=True)
            try:
                await poisoned.send(b"poison")

                def dropped() -> bool:
                    return (
                        sample(node, "paradoxplex_drops_total", reason="redelivery_exhausted") == 1
                    )

                await eventually(dropped, timeout=15, message="the poison message is dropped")
                assert sample(node, "paradoxplex_redeliveries_total") >= 2
                for n in range(5):
                    await other.round_trip(b"fine %d" % n, within=10)
                assert poisoned.received == b""
            finally:
                await poisoned.aclose()
                await other.aclose()
    finally:
        for server in servers:
            await server.stop(0)


async def test_what_waits_for_an_upstream_longer_than_hold_timeout_is_dropped_and_counted() -> None:
    never = asyncio.Event()

    async def stalled(message: Message, out: Outbox) -> None:
        await never.wait()

    server = UpstreamServer(stalled)
    port = await server.start("127.0.0.1:0")
    try:
        async with running_node(port, framing="line", hold_timeout=0.5) as node:
            client = await Client.connect(node)
            try:
                await client.send(b"one\ntwo\n")
                await eventually(lambda: sample(node, "paradoxplex_unacked_messages") == 2)
                await server.stop(0)  # gone, holding both unfinished; no other upstream
                await eventually(
                    lambda: sample(node, "paradoxplex_drops_total", reason="hold_timeout") == 2,
                    timeout=10,
                )
                assert sample(node, "paradoxplex_unacked_messages") == 0
                assert sample(node, "paradoxplex_redeliveries_total") == 2
            finally:
                await client.aclose()
    finally:
        never.set()
        await server.stop(0)


class Twice(pb_grpc.UpstreamPeerServiceServicer):
    """A batch upstream that sends every numbered reply twice (as after a lost reply ack)."""

    def __init__(self) -> None:
        self.reply_acks: list[int] = []

    async def ready(self, request: Any, context: Any) -> pb.ReadyResult:
        return pb.ReadyResult(ready=True)

    async def live(self, requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
        async for _ in requests:
            yield pb.LiveResult(live=True)

    async def bidirectionalStreaming(
        self, requests: AsyncIterator[pb.InputStreamRequest], context: Any
    ) -> AsyncIterator[pb.OutputStreamRequest]:
        async for request in requests:  # pragma: no cover - the node uses the batch path
            yield pb.OutputStreamRequest(client_uuid=request.client_uuid, payload=request.payload)

    async def batchStreaming(
        self, requests: AsyncIterator[pb.InputBatch], context: Any
    ) -> AsyncIterator[pb.OutputBatch]:
        number = 0
        async for batch in requests:
            if batch.reply_ack:
                self.reply_acks.append(batch.reply_ack)
            if not batch.items and not batch.reply_ack and not batch.drain:
                yield pb.OutputBatch(origin="twice.1")
                continue
            for item in batch.items:
                number += 1
                reply = pb.OutputStreamRequest(
                    client_uuid=item.client_uuid, payload=item.payload, cause_seq=item.seq
                )
                for _ in range(2):
                    yield pb.OutputBatch(items=[reply], first_reply=number)


async def test_a_reply_number_already_taken_is_dropped_and_acknowledged() -> None:
    servicer = Twice()
    server = grpc.aio.server()
    pb_grpc.add_UpstreamPeerServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with running_node(port, framing="line") as node:
            client = await Client.connect(node, collect=True)
            try:
                await client.send(b"one\ntwo\n")
                await client.expect(b"two")
                await eventually(lambda: max(servicer.reply_acks, default=0) == 2)
                assert client.received == b"onetwo"
                suppressed = sample(node, "paradoxplex_duplicates_suppressed_total", where="node")
                assert suppressed == 2
            finally:
                await client.aclose()
    finally:
        await server.stop(0)


async def test_a_removed_upstream_drains_first_and_what_it_did_not_start_goes_elsewhere() -> None:
    """Removal (``DELETE /v1/upstreams/{id}``) asks an SDK upstream to drain: it finishes the
    handler it runs; the messages it had not started are delivered to the other upstream."""
    gate = asyncio.Event()

    async def gated(message: Message, out: Outbox) -> None:
        if message.payload != b"warm-up":
            await gate.wait()
        echo_line(message, out)

    held = UpstreamServer(gated)
    other = UpstreamServer(gated)
    ports = [await held.start("127.0.0.1:0"), await other.start("127.0.0.1:0")]
    try:
        async with running_node(*ports, framing="line", routing="sticky") as node:
            client = await Client.connect(node, collect=True)
            try:
                await client.round_trip(b"warm-up\n")
                if not node.pool.links[upstream_id(ports[0])].counts.sent:
                    ports.reverse()  # the socket sticks to the second one: remove that one
                link = node.pool.links[upstream_id(ports[0])]
                await client.send(b"".join(line + b"\n" for line in lines(0, 20)))
                await eventually(lambda: len(link.deliveries) == 20, message="all sent to it")
                removing = asyncio.create_task(node.pool.remove(link.id))
                await eventually(lambda: link.streams.drain_requested)
                gate.set()  # the one it runs finishes there; the rest go to the other one
                await removing
                await client.expect(b"\n", times=21, within=10)
                assert client.tokens(b"\n") == [b"warm-up", *lines(0, 20)]
                assert upstream_id(ports[0]) not in node.pool.links
            finally:
                await client.aclose()
    finally:
        gate.set()
        await held.stop(0)
        await other.stop(0)
