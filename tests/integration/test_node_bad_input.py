"""Bad input from clients: garbage, oversize frames, half-closes, and a thousand dropped sockets."""

from __future__ import annotations

import asyncio
import os
import random
import struct

import pytest

from tests.support.client import Client
from tests.support.eventually import eventually
from tests.support.node_harness import (
    clients,
    running_node,
    sample,
    session_of,
    session_uuid,
    start_upstream,
)


async def test_garbage_bytes_echo_back_unchanged_in_raw() -> None:
    garbage = random.Random(7).randbytes(64 * 1024)
    server, recorder = await start_upstream()
    try:
        async with running_node(server.port) as node, clients(node, 1) as (client,):
            await client.send(garbage)
            assert await client.receive_exactly(len(garbage)) == garbage
            assert b"".join(recorder.data) == garbage  # raw: read boundaries are not frames
            await client.round_trip(b"\x00")
    finally:
        await server.stop(0)


@pytest.mark.parametrize(
    ("framing", "oversize"),
    [
        ("line", b"x" * 1500),  # no newline within max_frame
        ("length", struct.pack(">I", 1025)),  # declared length over max_frame: no body needed
    ],
)
async def test_an_oversize_frame_closes_only_its_socket(framing: str, oversize: bytes) -> None:
    server, recorder = await start_upstream()
    ok = b"fine\n" if framing == "line" else struct.pack(">I", 4) + b"fine"
    try:
        async with (
            running_node(server.port, framing=framing, max_frame=1024) as node,
            clients(node, 2) as (bad, good),
        ):
            await session_uuid(node, bad)
            await good.round_trip(ok, reply=b"fine")
            await bad.send(oversize)
            assert await bad.closed_by_peer() == b""
            kind = {"kind": "frame_too_large"}
            assert sample(node, "paradoxplex_bad_input_total", **kind) == 1
            await eventually(lambda: len(node.sessions) == 1, message="the bad socket is gone")
            assert sample(node, "paradoxplex_sockets_closed_total", reason="frame too large") == 1
            await good.round_trip(ok, reply=b"fine")
            assert recorder.data == [b"fine", b"fine"]
    finally:
        await server.stop(0)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_a_thousand_dropped_sockets_leave_nothing_behind() -> None:
    server, _ = await start_upstream()
    try:
        async with running_node(server.port) as node:
            async with clients(node, 1) as (warm_up,):
                await warm_up.round_trip(b"warm up")
            await eventually(lambda: not node.sessions)
            tasks_before = len(asyncio.all_tasks())
            fds_before = open_fds()
            for batch in range(10):
                opened = await asyncio.gather(*(Client.connect(node) for _ in range(100)))
                await eventually(lambda: len(node.sessions) >= 100, message=f"batch {batch}")
                for index, client in enumerate(opened):
                    if index % 3 == 0:
                        client.writer.write(b"a few bytes, then gone")
                    if index % 3 == 1:
                        client.writer.transport.abort()  # a reset instead of a FIN
                    else:
                        client.writer.close()
                await asyncio.gather(*(client.aclose() for client in opened))
            await eventually(lambda: not node.sessions, message="every session closed")
            await eventually(
                lambda: len(asyncio.all_tasks()) <= tasks_before, message="no leaked tasks"
            )
            await eventually(lambda: open_fds() <= fds_before + 2, message="fds released")

            async def fleet_empty() -> bool:
                listed, _ = await node.fleet.list_sessions(node=None, cursor=None, limit=10)
                return not listed

            await eventually(fleet_empty, message="the fleet lists no sessions")
            assert sample(node, "paradoxplex_sockets_opened_total") == 1001
            assert sample(node, "paradoxplex_sockets") == 0
    finally:
        await server.stop(0)


async def test_a_half_closed_socket_gets_its_reply_and_is_then_closed() -> None:
    server, _ = await start_upstream()
    try:
        async with running_node(server.port) as node, clients(node, 1) as (client,):
            await session_uuid(node, client)
            session = session_of(node, client)
            client.writer.write(b"last words")
            client.writer.write_eof()
            assert await client.closed_by_peer() == b"last words"
            assert session.close_reason == "client closed"
            await eventually(lambda: not node.sessions)
    finally:
        await server.stop(0)
