"""The node's limits on real sockets: max_connections, idle_timeout, hold_timeout, write buffers,
per-source limits."""

from __future__ import annotations

import asyncio

import pytest

from paradoxplex.node.node import Node
from paradoxplex.upstream import Message, Outbox
from tests.support.client import Client
from tests.support.eventually import eventually
from tests.support.node_harness import (
    Recorder,
    clients,
    listen_port,
    running_node,
    sample,
    session_of,
    session_uuid,
    start_upstream,
)
from tests.support.ports import free_port


async def test_the_socket_past_max_connections_is_closed_at_once() -> None:
    server, _ = await start_upstream()
    try:
        async with running_node(server.port, max_connections=2) as node:
            async with clients(node, 2) as (first, second):
                await first.round_trip(b"one")
                await second.round_trip(b"two")
                async with clients(node, 1) as (third,):
                    assert await third.closed_by_peer(within=2.0) == b""
                assert (
                    sample(node, "paradoxplex_sockets_refused_total", reason="max_connections") == 1
                )
                assert len(node.sessions) == 2
                await first.round_trip(b"still served")
                await second.round_trip(b"still served")
            await eventually(lambda: not node.sessions)
            async with clients(node, 1) as (later,):
                await later.round_trip(b"room again")
    finally:
        await server.stop(0)


async def test_idle_timeout_closes_an_idle_socket_only() -> None:
    server, _ = await start_upstream()
    try:
        async with (
            running_node(server.port, idle_timeout=0.4) as node,
            clients(node, 2) as (idle, busy),
        ):
            await session_uuid(node, idle)
            started = asyncio.get_running_loop().time()
            closing = asyncio.create_task(idle.closed_by_peer(within=3.0))
            while not closing.done():
                await busy.round_trip(b"keep alive")
                await asyncio.sleep(0.1)  # the client's pace, not a wait for a state
            assert closing.result() == b""
            elapsed = asyncio.get_running_loop().time() - started
            assert 0.35 <= elapsed < 2.0
            assert sample(node, "paradoxplex_sockets_closed_total", reason="idle timeout") == 1
            await busy.round_trip(b"not idle")
            assert len(node.sessions) == 1
    finally:
        await server.stop(0)


async def test_data_is_held_until_an_upstream_becomes_ready() -> None:
    port = free_port()
    async with running_node(port, wait_ready=False) as node, clients(node, 1) as (client,):
        await client.send(b"sent before any upstream")
        await eventually(lambda: sample(node, "paradoxplex_messages_in_total") == 1)
        assert list(session_of(node, client).flow.held) == [b"sent before any upstream"]
        await asyncio.sleep(0.5)  # the upstream comes up later, as the scenario says
        server, recorder = await start_upstream(port=port)
        try:
            reply = await client.receive_exactly(len(b"sent before any upstream"), within=10)
            assert reply == b"sent before any upstream"
            assert recorder.data == [b"sent before any upstream"]
            assert sample(node, "paradoxplex_drops_total", reason="hold_timeout") == 0
        finally:
            await server.stop(0)


async def test_hold_timeout_closes_a_socket_no_upstream_would_take() -> None:
    async with running_node(hold_timeout=0.3) as node, clients(node, 1) as (client,):
        await client.send(b"nobody listens")
        assert await client.closed_by_peer(within=3.0) == b""
        assert sample(node, "paradoxplex_drops_total", reason="hold_timeout") == 1
        await eventually(lambda: not node.sessions)
        closed = sample(
            node, "paradoxplex_sockets_closed_total", reason="no upstream took its data"
        )
        assert closed == 1


def flood(message: Message, out: Outbox) -> bool:
    """``flood``: 200 replies of 32 KiB (6.4 MB) to the sender."""
    if message.payload != b"flood":
        return False
    for _ in range(200):
        out.reply(message.client_uuid, b"z" * 32 * 1024)
    return True


async def test_a_slow_reader_is_closed_while_others_keep_getting_replies() -> None:
    server, _ = await start_upstream(Recorder(rule=flood))
    try:
        async with running_node(server.port, write_buffer=64 * 1024) as node:
            slow = await Client.connect(node, rcvbuf=4096)
            try:
                async with clients(node, 1) as (fast,):
                    await session_uuid(node, slow)
                    slow_session = session_of(node, slow)
                    await slow.send(b"flood")  # and never read
                    for number in range(20):
                        await fast.round_trip(f"fast {number}".encode())
                    await eventually(lambda: slow_session.closing, message="slow reader closed")
                    assert slow_session.close_reason == "write buffer full"
                    assert sample(node, "paradoxplex_drops_total", reason="write_buffer_full") >= 1
                    await eventually(lambda: len(node.sessions) == 1)
                    await fast.round_trip(b"after the slow one left")
            finally:
                await slow.aclose()
    finally:
        await server.stop(0)


def big(message: Message, out: Outbox) -> bool:
    """``big``: one reply of 3 MiB, larger than the default write buffer (1 MiB)."""
    if message.payload != b"big":
        return False
    out.reply(message.client_uuid, bytes(range(256)) * (3 * 4096))
    return True


async def test_a_reply_larger_than_the_write_buffer_reaches_a_reader_that_keeps_up() -> None:
    """The write buffer bounds the backlog of a slow reader, not the size of one reply."""
    server, _ = await start_upstream(Recorder(rule=big))
    try:
        async with running_node(server.port) as node, clients(node, 1) as (client,):
            await client.send(b"big")
            reply = await client.receive_exactly(3 * 1024 * 1024)
            assert reply == bytes(range(256)) * (3 * 4096)
            await client.round_trip(b"and then some")
            assert sample(node, "paradoxplex_drops_total", reason="write_buffer_full") == 0
    finally:
        await server.stop(0)


async def connect_from(node: Node, host: str) -> Client:
    """A client whose socket is bound to ``host`` (another loopback address: another source)."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", listen_port(node), local_addr=(host, 0)
    )
    return Client(reader, writer)


async def refused_now(node: Node, client: Client, reason: str, count: float) -> None:
    """``client`` is closed at once, and ``count`` refusals of ``reason`` are counted."""
    try:
        assert await client.closed_by_peer(within=2.0) == b""
    finally:
        await client.aclose()
    assert sample(node, "paradoxplex_sockets_refused_total", reason=reason) == count


async def test_max_connections_per_ip_refuses_a_source_past_it_not_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server, _ = await start_upstream()
    try:
        async with (
            running_node(server.port, max_connections_per_ip=2) as node,
            clients(node, 2) as (first, second),
        ):
            await first.round_trip(b"one")
            await second.round_trip(b"two")
            for number in range(1, 6):
                await refused_now(node, await Client.connect(node), "per_ip", number)
            other = await connect_from(node, "127.0.0.2")
            try:
                await other.round_trip(b"another source")
            finally:
                await other.aclose()
            await first.round_trip(b"still served")
            await first.aclose()
            await eventually(lambda: len(node.sessions) == 1)
            async with clients(node, 1) as (later,):
                await later.round_trip(b"room again")
            assert sample(node, "paradoxplex_sockets_refused_total", reason="max_connections") == 0
    finally:
        await server.stop(0)
    said = [r for r in caplog.records if "max_connections_per_ip" in r.getMessage()]
    assert len(said) == 1, "five refusals of one source within 10 s are one log line"
    assert said[0].getMessage().startswith("refused 1 socket(s) from 127.0.0.1:")


async def test_accept_rate_refuses_a_fast_source_and_lets_it_back_later() -> None:
    server, _ = await start_upstream()
    try:
        async with running_node(server.port, accept_rate=5.0) as node:
            opened: list[Client] = []
            try:
                for _ in range(5):  # the burst: one second's worth
                    opened.append(await Client.connect(node))
                    await opened[-1].round_trip(b"in time")
                await refused_now(node, await Client.connect(node), "accept_rate", 1)
                other = await connect_from(node, "127.0.0.3")
                try:
                    await other.round_trip(b"another source has its own bucket")
                finally:
                    await other.aclose()

                async def admitted() -> bool:
                    client = await Client.connect(node)
                    opened.append(client)
                    try:
                        await client.round_trip(b"later")
                    except (ConnectionError, asyncio.IncompleteReadError):
                        return False
                    return True

                await eventually(admitted, timeout=3.0, message="a token came back")
                for client in opened[:5]:
                    await client.round_trip(b"the admitted ones are untouched")
            finally:
                for client in opened:
                    await client.aclose()
    finally:
        await server.stop(0)


async def test_max_buffered_closes_the_biggest_offender_and_spares_a_reader_that_keeps_up() -> None:
    server, _ = await start_upstream(Recorder(rule=flood))
    try:
        async with running_node(
            server.port, write_buffer=16 * 1024 * 1024, max_buffered=1024 * 1024
        ) as node:
            slow = await Client.connect(node, rcvbuf=4096)
            try:
                async with clients(node, 1) as (fast,):
                    slow_session = (
                        session_of(node, slow) if await session_uuid(node, slow) else None
                    )
                    assert slow_session is not None
                    await slow.send(b"flood")  # 6.4 MB, and never read
                    for number in range(20):
                        await fast.round_trip(f"fast {number}".encode())
                    await eventually(lambda: slow_session.closing, message="slow reader closed")
                    assert slow_session.close_reason == "node buffer full"
                    assert sample(node, "paradoxplex_drops_total", reason="node_buffer_full") == 1
                    assert sample(node, "paradoxplex_drops_total", reason="write_buffer_full") == 0
                    await eventually(lambda: len(node.sessions) == 1)
                    await fast.round_trip(b"after the slow one left")
                    assert node.hosting.buffers.total == 0
            finally:
                await slow.aclose()
    finally:
        await server.stop(0)


async def test_max_frames_per_second_delays_a_fast_sender_drops_nothing_and_spares_others() -> None:
    server, recorder = await start_upstream(Recorder(echo=False))
    try:
        async with (
            running_node(server.port, framing="line", max_frames_per_second=20.0) as node,
            clients(node, 2) as (fast, other),
        ):
            started = asyncio.get_running_loop().time()
            await fast.send(b"".join(b"line %d\n" % number for number in range(50)))
            await eventually(lambda: len(recorder.data) >= 20, message="the burst")
            assert len(recorder.data) < 50, "the rest waits for tokens"
            assert sample(node, "paradoxplex_rate_limited_total") >= 1
            await other.send(b"not limited by the other's rate\n")
            await eventually(lambda: b"not limited by the other's rate" in recorder.data)
            await eventually(lambda: len(recorder.data) == 51, timeout=5.0, message="all")
            elapsed = asyncio.get_running_loop().time() - started
            assert elapsed >= 1.2  # 30 lines past the burst of 20, at 20 a second
            lines = [d for d in recorder.data if d.startswith(b"line")]
            assert lines == [b"line %d" % number for number in range(50)]
            assert sample(node, "paradoxplex_drops_total", reason="hold_timeout") == 0
    finally:
        await server.stop(0)
