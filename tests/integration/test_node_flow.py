"""A socket's flow control on real sockets: paused sockets whose client left, and every reply
either written or counted, whatever the state of its socket."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest

from paradoxplex.node.node import Node
from paradoxplex.upstream import Message, Outbox
from tests.support.client import Client
from tests.support.eventually import eventually
from tests.support.node_harness import (
    Recorder,
    clients,
    running_node,
    sample,
    session_of,
    session_uuid,
    start_upstream,
)
from tests.support.ports import free_port

CONTRACT = 2.0  # a socket closed by its client leaves the list within 2 s, paused or not
REPLIES = 800


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def status_of(http: aiohttp.ClientSession, method: str, path: str, **kw: object) -> int:
    async with http.request(method, path, **kw) as answer:  # type: ignore[arg-type]
        await answer.read()
        return answer.status


async def disconnect(client: Client, how: str) -> None:
    """``fin``: an orderly close; ``rst``: a reset (SO_LINGER 0)."""
    if how == "rst":
        raw = client.writer.get_extra_info("socket")
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.writer.transport.abort()
    await client.aclose()


@asynccontextmanager
async def echo_node() -> AsyncIterator[tuple[Node, Recorder, aiohttp.ClientSession]]:
    server, recorder = await start_upstream()
    try:
        async with (
            running_node(server.port) as node,
            aiohttp.ClientSession(node.admin_url) as http,
        ):
            yield node, recorder, http
    finally:
        await server.stop(0)


async def gone_everywhere(node: Node, http: aiohttp.ClientSession, uuid: str) -> None:
    """Not in the node's sessions, not listed, and a send answers 404."""
    assert uuid not in node.sessions
    assert await status_of(http, "GET", f"/v1/sockets/{uuid}") == 404
    send = await status_of(http, "POST", f"/v1/sockets/{uuid}/send", json={"text": "hello?"})
    assert send == 404


async def test_an_accepted_socket_sends_without_nagle_delay() -> None:
    """TCP_NODELAY comes from the loop's transport (the node no longer sets it itself)."""
    async with echo_node() as (node, _, _), clients(node, 1) as (client,):
        await session_uuid(node, client)
        session = session_of(node, client)
        assert session.transport is not None
        sock = session.transport.get_extra_info("socket")
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


# --- issue 12, item 1: a paused socket whose client left ------------------------------------


@pytest.mark.parametrize("how", ["fin", "rst"])
async def test_a_paused_socket_whose_client_left_leaves_within_two_seconds(how: str) -> None:
    async with echo_node() as (node, recorder, http):
        assert await status_of(http, "GET", "/livez") == 200  # the admin connection, kept alive
        fds_before = open_fds()
        client = await Client.connect(node)
        uuid = await session_uuid(node, client)
        assert await status_of(http, "POST", f"/v1/sockets/{uuid}/pause") == 200
        await client.send(b"sent while paused, never read")
        await disconnect(client, how)
        took = await eventually(
            lambda: uuid not in node.sessions, timeout=CONTRACT, message="the paused socket left"
        )
        await gone_everywhere(node, http, uuid)
        await eventually(lambda: open_fds() <= fds_before, message="its fd released")
        assert recorder.data == []  # paused: what it sent was never read
        reason = "client closed" if how == "fin" else "connection error"
        assert sample(node, "paradoxplex_sockets_closed_total", reason=reason) == 1
        print(f"paused socket, {how}: left after {took:.2f}s")


async def test_a_paused_socket_is_still_not_read_while_probed_and_is_read_after_resume() -> None:
    async with echo_node() as (node, recorder, http), clients(node, 2) as (paused, other):
        uuid = await session_uuid(node, paused)
        assert await status_of(http, "POST", f"/v1/sockets/{uuid}/pause") == 200
        await paused.send(b"sent while paused")
        loop = asyncio.get_running_loop()
        started = loop.time()
        while loop.time() - started < 1.0:  # four probe intervals of traffic elsewhere
            await other.round_trip(b"other")
        assert b"sent while paused" not in recorder.data
        assert node.sessions[uuid].info.bytes_in == 0  # type: ignore[union-attr]
        assert await status_of(http, "POST", f"/v1/sockets/{uuid}/resume") == 200
        assert await paused.receive_exactly(17) == b"sent while paused"
        await paused.round_trip(b"and still served")


@pytest.mark.parametrize("how", ["fin", "rst"])
async def test_a_socket_paused_by_backpressure_whose_client_left_leaves_within_two_seconds(
    how: str,
) -> None:
    """No upstream ready: what was read is held, reading paused, for up to ``hold_timeout``
    (30 s); a client that leaves meanwhile is noticed at once, and its held data counted."""
    async with (
        running_node(free_port(), wait_ready=False) as node,
        aiohttp.ClientSession(node.admin_url) as http,
    ):
        client = await Client.connect(node)
        uuid = await session_uuid(node, client)
        await client.send(b"held: no upstream")
        await eventually(lambda: sample(node, "paradoxplex_messages_in_total") == 1)
        await disconnect(client, how)
        await eventually(
            lambda: uuid not in node.sessions, timeout=CONTRACT, message="the held socket left"
        )
        await gone_everywhere(node, http, uuid)
        assert sample(node, "paradoxplex_drops_total", reason="socket_closed") == 1
        assert sample(node, "paradoxplex_drops_total", reason="hold_timeout") == 0


# --- issue 12, item 2: every reply written or counted ---------------------------------------


def burst(message: Message, out: Outbox) -> bool:
    """``burst``: ``REPLIES`` replies of 8 KiB to the sender."""
    if message.payload != b"burst":
        return False
    for number in range(REPLIES):
        out.reply(message.client_uuid, number.to_bytes(4, "big") * 2048)
    return True


def drops(node: Node) -> dict[str, float]:
    """Every ``paradoxplex_drops_total`` sample that counted something, by reason (every
    reason has a series, at 0, from the start)."""
    counted: dict[str, float] = {}
    for family in node.metrics.registry.collect():
        for found in family.samples:
            if found.name == "paradoxplex_drops_total" and found.value:
                counted[found.labels["reason"]] = found.value
    return counted


@pytest.mark.parametrize("overflow", ["close", "drop"])
async def test_every_reply_to_a_client_that_never_reads_is_written_or_counted(
    overflow: str,
) -> None:
    server, _ = await start_upstream(Recorder(rule=burst))
    try:
        async with running_node(server.port, write_buffer=64 * 1024, overflow=overflow) as node:
            client = await Client.connect(node, rcvbuf=4096)
            try:
                await session_uuid(node, client)
                await client.send(b"burst")  # and never read

                def accounted() -> int:
                    written = sample(node, "paradoxplex_messages_out_total")
                    return int(written + sum(drops(node).values()))

                await eventually(
                    lambda: accounted() >= REPLIES, timeout=10.0, message="replies accounted"
                )
                written = int(sample(node, "paradoxplex_messages_out_total"))
                print(f"overflow {overflow}: written {written}, counted {drops(node)}")
                assert accounted() == REPLIES
                assert drops(node)["write_buffer_full"] >= 1
                if overflow == "close":
                    await eventually(lambda: not node.sessions, message="the socket closed")
                else:
                    counted = {reason for reason, count in drops(node).items() if count}
                    assert counted == {"write_buffer_full"}
                    assert len(node.sessions) == 1
            finally:
                await client.aclose()
    finally:
        await server.stop(0)
