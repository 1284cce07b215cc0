"""Idempotency keys across a fleet: two in-process nodes on one Redis (and a lone node in
memory), real sockets and upstreams.

What must hold: an action sent with one key through any node acts once and every later call
answers as the first did, with ``Idempotent-Replayed: true``; the key with another request is a
422 wherever it arrives; socket commands are decided by the owner (the asker keeps nothing),
broadcasts and upstream changes by the fleet state.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest_asyncio

from paradoxplex.node.fleet.backends import build_backend
from paradoxplex.node.node import Node
from paradoxplex.shared.config import Address
from paradoxplex.upstream import UpstreamServer
from tests.support.client import Client, close_all
from tests.support.eventually import eventually
from tests.support.fleet import (
    Admin,
    accepted,
    node_config,
    registered,
    start_fleet,
    start_upstream,
    stop_nodes,
)


@pytest_asyncio.fixture
async def upstream() -> AsyncIterator[tuple[UpstreamServer, Address]]:
    server, address = await start_upstream()
    try:
        yield server, address
    finally:
        await server.stop(0)


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest_asyncio.fixture
async def fleet(
    redis_url: str, key_prefix: str, upstream: tuple[UpstreamServer, Address]
) -> AsyncIterator[list[Node]]:
    nodes = await start_fleet(redis_url, key_prefix, [upstream[1]], ids=("a", "b"))
    try:
        yield nodes
    finally:
        await stop_nodes(nodes)


async def socket_on(node: Node, others: list[Node]) -> tuple[Client, str]:
    client = await Client.connect(node.listen_address, collect=True)
    uuid = await accepted(node, client)
    for other in others:
        await eventually(lambda: registered(other, uuid), message="registered")  # noqa: B023
    return client, uuid


async def test_a_send_acts_once_whichever_node_is_asked(
    fleet: list[Node], http: aiohttp.ClientSession
) -> None:
    a, b = fleet
    client, uuid = await socket_on(a, [b])
    try:
        admins = [Admin(b.admin_url, http), Admin(a.admin_url, http), Admin(b.admin_url, http)]
        path = f"/v1/sockets/{uuid}/send"
        answers = [await one.exchange("POST", path, {"text": "<1>"}, key="k1") for one in admins]
        ok = {"ok": True}
        assert answers == [(200, ok, False), (200, ok, True), (200, ok, True)]
        await client.expect(b"<1>")
        status, body, _ = await admins[0].exchange("POST", path, {"text": "<2>"}, key="k1")
        assert (status, body["error"]["code"]) == (422, "idempotency_key_reused")
        status, _, _ = await admins[1].exchange("POST", path, {"text": "<2>"}, key="k2")
        await client.expect(b"<2>")
        assert status == 200
        assert bytes(client.received) == b"<1><2>"
        assert len(b.commands.keys) == 0, "the asker keeps no key: the owner decides"
        assert len(a.commands.keys) == 2
    finally:
        await close_all([client])


async def test_pause_and_close_with_a_key_replay_the_first_answer(
    fleet: list[Node], http: aiohttp.ClientSession
) -> None:
    a, b = fleet
    client, uuid = await socket_on(a, [b])
    try:
        admin = Admin(b.admin_url, http)
        first = await admin.exchange("POST", f"/v1/sockets/{uuid}/pause", key="p")
        assert first == (200, {"ok": True}, False)
        await admin.ok("POST", f"/v1/sockets/{uuid}/resume")
        again = await admin.exchange("POST", f"/v1/sockets/{uuid}/pause", key="p")
        assert again == (200, {"ok": True}, True)
        info = a.sessions[uuid].info
        assert info is not None
        assert info.active, "the replay did not pause it again"
        closed = [await admin.exchange("DELETE", f"/v1/sockets/{uuid}", key="c") for _ in "12"]
        assert closed == [(204, None, False), (204, None, True)]
    finally:
        await close_all([client])


async def test_a_broadcast_with_a_key_goes_out_once_through_any_node(
    fleet: list[Node], http: aiohttp.ClientSession
) -> None:
    a, b = fleet
    sockets = [await socket_on(node, fleet) for node in (a, b, b)]
    try:
        body = {"target": "all", "text": "<all>"}
        answers = [
            await Admin(node.admin_url, http).exchange("POST", "/v1/broadcast", body, key="bk")
            for node in (a, b, a)
        ]
        assert answers == [
            (200, {"delivered_local": 1}, False),
            (200, {"delivered_local": 1}, True),  # a's answer, replayed by b
            (200, {"delivered_local": 1}, True),
        ]
        for client, _ in sockets:
            await client.expect(b"<all>")
        other = await Admin(b.admin_url, http).exchange(
            "POST", "/v1/broadcast", {"target": "active", "text": "<all>"}, key="bk"
        )
        assert other[0] == 422
        await Admin(a.admin_url, http).ok("POST", "/v1/broadcast", {"target": "all", "text": "."})
        for client, _ in sockets:
            await client.expect(b".")
            assert client.count(b"<all>") == 1
    finally:
        await close_all([client for client, _ in sockets])


async def test_upstream_changes_with_a_key_act_once(
    fleet: list[Node], http: aiohttp.ClientSession
) -> None:
    a, b = fleet
    body = {"host": "127.0.0.1", "port": 1}
    first = await Admin(a.admin_url, http).exchange("POST", "/v1/upstreams", body, key="u")
    again = await Admin(b.admin_url, http).exchange("POST", "/v1/upstreams", body, key="u")
    assert (first[0], first[2], again[0], again[2]) == (201, False, 201, True)
    assert first[1] == again[1]
    unkeyed = await Admin(b.admin_url, http).call("POST", "/v1/upstreams", body)
    assert unkeyed[0] == 409, "without a key the second add is the conflict it always was"
    removed = [
        await Admin(node.admin_url, http).exchange("DELETE", "/v1/upstreams/127.0.0.1:1", key="r")
        for node in (b, a)
    ]
    assert removed == [(204, None, False), (204, None, True)]
    missing = [
        await Admin(a.admin_url, http).exchange("DELETE", "/v1/upstreams/127.0.0.1:2", key="m")
        for _ in "12"
    ]
    assert [(status, replayed) for status, _, replayed in missing] == [(404, False), (404, True)]


async def test_a_lone_node_in_memory_keeps_broadcast_keys_too(
    upstream: tuple[UpstreamServer, Address], http: aiohttp.ClientSession
) -> None:
    config = node_config("", "px", "solo", [upstream[1]], redis=None)
    node = Node(config, await build_backend(config))
    await node.start()
    client = await Client.connect(node.listen_address, collect=True)
    try:
        await accepted(node, client)
        admin = Admin(node.admin_url, http)
        body = {"target": "all", "text": "<x>"}
        answers = [await admin.exchange("POST", "/v1/broadcast", body, key="k") for _ in "12"]
        assert [replayed for _, _, replayed in answers] == [False, True]
        await client.expect(b"<x>")
        await admin.ok("POST", "/v1/broadcast", {"target": "all", "text": "."})
        await client.expect(b".")
        assert client.count(b"<x>") == 1
    finally:
        await close_all([client])
        await node.stop()
