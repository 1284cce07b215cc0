"""Stopping a node (what SIGTERM does): sockets close, and what was read reaches an upstream."""

from __future__ import annotations

import asyncio

import pytest

from tests.support.client import Client
from tests.support.eventually import eventually
from tests.support.node_harness import clients, running_node, sample, start_upstream, upstream_id

FRAMES = 3000


@pytest.mark.parametrize("batch", [True, False], ids=["batch", "original"])
async def test_stop_delivers_what_was_read_then_closes_the_sockets(batch: bool) -> None:
    server, recorder = await start_upstream(batch=batch)
    try:
        async with running_node(server.port, framing="line") as node, clients(node, 2) as pair:
            first, second = pair
            wire = b"".join(f"{n:05d}\n".encode() for n in range(FRAMES))
            await first.send(wire)
            await second.send(b"other\n")
            await eventually(
                lambda: sample(node, "paradoxplex_messages_in_total") == FRAMES + 1,
                message="the node read every frame",
            )
            link = node.pool.links[upstream_id(server.port)]
            waiting = len(link.queue) + sum(len(s.flow.held) for s in node.sessions.values())
            await node.stop()
            assert not node.sessions
            for client in pair:
                await client.closed_by_peer()
            await eventually(
                lambda: len(recorder.data) == FRAMES + 1,
                message="every frame read reached the upstream",
            )
            assert sorted(recorder.data) == sorted(
                [f"{n:05d}".encode() for n in range(FRAMES)] + [b"other"]
            )
            if not batch:  # one message per gRPC write: most frames are still queued (~2900)
                assert waiting > 0
    finally:
        await server.stop(0)


async def test_a_draining_node_refuses_new_sockets_and_stops_when_its_sockets_leave() -> None:
    server, _ = await start_upstream()
    try:
        async with running_node(server.port, drain_grace=8.0) as node, clients(node, 3) as trio:
            for client in trio:
                await client.round_trip(b"hello")
            loop = asyncio.get_running_loop()
            started = loop.time()
            stopping = asyncio.create_task(node.stop())
            await eventually(lambda: node.draining)
            with pytest.raises(ConnectionRefusedError):
                await Client.connect(node)
            await trio[0].round_trip(b"still served while draining")
            for client in trio:  # the grace is for sockets to finish: they do, so no waiting
                await client.aclose()
            await stopping
            assert loop.time() - started < 4.0
            assert not node.sessions
            assert sample(node, "paradoxplex_sockets_closed_total", reason="client closed") == 3
    finally:
        await server.stop(0)
