"""Wire compatibility: an upstream generated from the original proto only, against a node.

Also the opt-in lifecycle events: off, an original upstream never sees a message it would
take for data; on, an upstream that knows them gets CONNECTED and DISCONNECTED.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.integration.original_upstream import OriginalUpstream, compile_original
from tests.support.client import Client
from tests.support.eventually import eventually
from tests.support.node_harness import (
    clients,
    running_node,
    sample,
    session_uuid,
    start_upstream,
    upstream_id,
)

BROADCAST_ALL_ON_THE_WIRE = b"\x18\x00"  # field 3 (broadcast), varint 0: set via the oneof


@pytest.fixture(scope="module")
def wire_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_original(tmp_path_factory.mktemp("original-wire"))


@pytest.fixture
async def original(wire_dir: Path) -> AsyncIterator[OriginalUpstream]:
    upstream = OriginalUpstream(wire_dir)
    try:
        yield await upstream.start()
    finally:
        await upstream.stop()


async def test_echo_with_an_original_upstream_after_falling_back_from_batch(
    original: OriginalUpstream,
) -> None:
    async with running_node(original.port) as node, clients(node, 1) as (client,):
        link = node.pool.links[upstream_id(original.port)]
        assert link.batching is False  # batchStreaming answered UNIMPLEMENTED
        uuid = await session_uuid(node, client)
        await client.round_trip(b"hello, original")
        assert original.payloads == [b"hello, original"]
        assert original.received[0].uuid == uuid
        assert original.received[0].unknown == 0


async def test_original_broadcasts_reach_the_right_sockets_exactly_once(
    original: OriginalUpstream,
) -> None:
    async with (
        running_node(original.port, framing="line") as node,
        clients(node, 3) as (first, second, paused),
        aiohttp.ClientSession(node.admin_url) as http,
    ):
        uuids = [await session_uuid(node, c) for c in (first, second, paused)]
        async with http.post(f"/v1/sockets/{uuids[2]}/pause") as answer:
            assert answer.status == 200
        await first.send(
            b"broadcast:all:all;\nbroadcast:active:active;\nbroadcast:inactive:inactive;\n"
        )
        first_got = await first.receive_exactly(len(b"all;active;"))
        second_got = await second.receive_exactly(len(b"all;active;"))
        paused_got = await paused.receive_exactly(len(b"all;inactive;"))
        assert sorted(first_got.split(b";")) == [b"", b"active", b"all"]
        assert sorted(second_got.split(b";")) == [b"", b"active", b"all"]
        assert sorted(paused_got.split(b";")) == [b"", b"all", b"inactive"]
        # Nothing else was written before a marker sent after all three broadcasts landed.
        for uuid in uuids:
            async with http.post(f"/v1/sockets/{uuid}/send", json={"text": "END;"}) as answer:
                assert answer.status == 200
        for client in (first, second, paused):
            assert await client.receive_until(b"END;") == b"END;"
        sent_all = [m.sent for m in original.received if m.payload.startswith(b"broadcast:all:")]
        assert len(sent_all) == 1
        assert BROADCAST_ALL_ON_THE_WIRE in sent_all[0]


async def barrier(client: Client, count: int = 8) -> None:
    """Round trips after earlier work, so anything queued before has reached the upstream."""
    for number in range(count):
        await client.round_trip(f"barrier {number}".encode())


async def test_no_lifecycle_events_reach_an_original_upstream_by_default(
    original: OriginalUpstream,
) -> None:
    async with running_node(original.port) as node:
        async with clients(node, 2) as (leaving, staying):
            await leaving.round_trip(b"from the leaving socket")
            await staying.round_trip(b"from the staying socket")
            await leaving.aclose()
            await eventually(lambda: len(node.sessions) == 1, message="one socket left")
            await barrier(staying)
        data_messages = 2 + 8
        assert len(original.received) == data_messages
        assert all(message.payload for message in original.received)
        assert all(message.unknown == 0 for message in original.received)
        out = sample(
            node,
            "paradoxplex_upstream_messages_total",
            upstream=upstream_id(original.port),
            direction="out",
        )
        assert out == data_messages


async def test_lifecycle_events_are_what_an_original_upstream_would_take_for_data(
    original: OriginalUpstream,
) -> None:
    """Why they are opt-in: turned on, the original upstream sees empty-payload messages."""
    async with running_node(original.port, lifecycle_events=True) as node:
        async with clients(node, 1) as (client,):
            await session_uuid(node, client)
            await client.round_trip(b"data")
        await eventually(lambda: not node.sessions)
        await eventually(lambda: len(original.received) == 3, message="connect, data, close")
        empty = [message for message in original.received if not message.payload]
        assert len(empty) == 2
        assert all(message.unknown == 1 for message in empty)


async def test_lifecycle_events_tell_the_upstream_about_connects_and_disconnects() -> None:
    server, recorder = await start_upstream()
    try:
        async with running_node(server.port, lifecycle_events=True) as node:
            async with clients(node, 1) as (client,):
                uuid = await session_uuid(node, client)
                await client.round_trip(b"between the events")
                connected = recorder.events
                assert [m.event for m in connected] == ["connected"]
                assert connected[0].client_uuid == uuid
                assert connected[0].remote_address == client.remote_as_node_sees_it
                assert connected[0].node_id == node.node_id
                assert connected[0].payload == b""
            await eventually(
                lambda: [m.event for m in recorder.events] == ["connected", "disconnected"],
                message="a DISCONNECTED event",
            )
            disconnected = recorder.events[1]
            assert disconnected.client_uuid == uuid
            assert disconnected.remote_address == client.remote_as_node_sees_it
            assert disconnected.reason == "client closed"
            assert recorder.data == [b"between the events"]
    finally:
        await server.stop(0)
