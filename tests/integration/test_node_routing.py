"""A node with real gRPC upstreams and real sockets: framing, round robin, sticky routing."""

from __future__ import annotations

import struct

import pytest

from tests.support.eventually import eventually
from tests.support.node_harness import (
    clients,
    running_node,
    session_uuid,
    start_upstream,
    upstream_id,
)

FRAMES = [b"one", b"two two", b"\x00\xffthree"]


def encode(framing: str, frames: list[bytes]) -> bytes:
    if framing == "line":
        return b"".join(frame + b"\n" for frame in frames)
    return b"".join(struct.pack(">I", len(frame)) + frame for frame in frames)


async def test_raw_echo_round_trip() -> None:
    server, recorder = await start_upstream()
    try:
        async with running_node(server.port) as node, clients(node, 1) as (client,):
            uuid = await session_uuid(node, client)
            await client.round_trip(b"hello, upstream")
            assert recorder.data == [b"hello, upstream"]
            assert {m.client_uuid for m in recorder.messages} == {uuid}
    finally:
        await server.stop(0)


@pytest.mark.parametrize("framing", ["line", "length"])
async def test_framed_messages_reach_the_upstream_as_frames(framing: str) -> None:
    """Frames arrive without their framing; the replies are written to the socket unchanged."""
    server, recorder = await start_upstream()
    try:
        async with running_node(server.port, framing=framing) as node, clients(node, 1) as (c,):
            wire = encode(framing, FRAMES)
            await c.send(wire[:5])  # a frame split across reads
            await c.send(wire[5:])
            echoed = await c.receive_exactly(sum(map(len, FRAMES)))
            assert echoed == b"".join(FRAMES)  # no newline or prefix added back
            assert recorder.data == FRAMES
    finally:
        await server.stop(0)


async def test_round_robin_per_message_over_two_upstreams() -> None:
    first, one = await start_upstream()
    second, two = await start_upstream()
    try:
        async with running_node(first.port, second.port, framing="line") as node:
            async with clients(node, 1) as (client,):
                for number in range(20):
                    await client.round_trip(
                        f"m{number:02}\n".encode(), reply=f"m{number:02}".encode()
                    )
            assert len(one.data) == 10
            assert len(two.data) == 10
            assert sorted(one.data + two.data) == [f"m{n:02}".encode() for n in range(20)]
    finally:
        await first.stop(0)
        await second.stop(0)


async def test_sticky_routing_moves_a_socket_only_when_its_upstream_stops() -> None:
    first, one = await start_upstream()
    second, two = await start_upstream()
    try:
        async with (
            running_node(first.port, second.port, framing="line", routing="sticky") as node,
            clients(node, 1) as (client,),
        ):
            uuid = await session_uuid(node, client)
            for number in range(10):
                await client.round_trip(f"a{number}\n".encode(), reply=f"a{number}".encode())
            counts = sorted([len(one.data), len(two.data)])
            assert counts == [0, 10]
            serving, serving_port, other = (
                (first, first.port, two) if one.data else (second, second.port, one)
            )
            await serving.stop(0)
            link = node.pool.links[upstream_id(serving_port)]
            await eventually(lambda: not link.in_rotation, message="the stopped upstream leaves")
            for number in range(10):
                await client.round_trip(f"b{number}\n".encode(), reply=f"b{number}".encode())
            assert other.data == [f"b{n}".encode() for n in range(10)]
            assert {m.client_uuid for m in one.messages + two.messages} == {uuid}
            assert list(node.sessions) == [uuid]  # the same socket, never closed
    finally:
        await first.stop(0)
        await second.stop(0)


async def test_sticky_sockets_spread_over_upstreams() -> None:
    """Sticky keeps each socket on one upstream, but different sockets get different ones."""
    first, one = await start_upstream()
    second, two = await start_upstream()
    try:
        async with running_node(first.port, second.port, framing="line", routing="sticky") as node:
            async with clients(node, 2) as pair:
                for number in range(5):
                    for index, client in enumerate(pair):
                        text = f"s{index}-{number}"
                        await client.round_trip(f"{text}\n".encode(), reply=text.encode())
            senders_one = {m.client_uuid for m in one.messages}
            senders_two = {m.client_uuid for m in two.messages}
            assert len(senders_one) == 1
            assert len(senders_two) == 1
            assert senders_one != senders_two
    finally:
        await first.stop(0)
        await second.stop(0)
