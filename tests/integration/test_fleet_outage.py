"""Redis stopped and restarted (empty) under a fleet of three in-process nodes.

A dedicated redis-server, since it is taken away: node-local traffic goes on untouched,
``/readyz`` stays 200 and says degraded meanwhile, listings say they are partial, and within
5 s of Redis coming back cross-node delivery works again and every node's sockets are listed
again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
import pytest_asyncio

from paradoxplex.node.node import Node
from paradoxplex.shared.config import Address
from paradoxplex.upstream import UpstreamServer
from tests.support.client import Client, close_all
from tests.support.eventually import eventually
from tests.support.fleet import (
    Admin,
    Scripted,
    accepted,
    client_on,
    registered,
    start_fleet,
    start_upstream,
    stop_nodes,
)
from tests.support.redis_server import RedisServer

RECOVERY_LIMIT = 5.0


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.close()


@pytest_asyncio.fixture
async def upstreams() -> AsyncIterator[list[tuple[UpstreamServer, Scripted]]]:
    handlers = [Scripted(), Scripted()]
    servers = [await start_upstream(handler) for handler in handlers]
    try:
        yield [(server, handler) for (server, _), handler in zip(servers, handlers, strict=True)]
    finally:
        for server, _ in servers:
            await server.stop(0)


class Traffic:
    """Echo round trips on one socket, one after another, until stopped."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.answered = 0
        self.failures: list[str] = []
        self._stop = asyncio.Event()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        number = 0
        while not self._stop.is_set():
            number += 1
            try:
                await self.client.round_trip(b"<rt%d>" % number, within=3.0)
                self.answered += 1
            except AssertionError as error:
                self.failures.append(str(error)[:200])

    async def stop(self) -> None:
        self._stop.set()
        await self.task


async def test_node_local_traffic_survives_a_redis_restart_and_the_fleet_recovers(
    own_redis: RedisServer, upstreams: list[tuple[UpstreamServer, Scripted]], key_prefix: str
) -> None:
    addresses = [Address("127.0.0.1", server.port) for server, _ in upstreams]
    nodes: list[Node] = []
    clients: list[Client] = []
    traffic: Traffic | None = None
    async with aiohttp.ClientSession() as http:
        try:
            nodes = await start_fleet(own_redis.url, key_prefix, addresses, lifecycle_events=True)
            alpha, bravo, _ = nodes
            admins = [Admin(node.admin_url, http) for node in nodes]
            uuids: dict[str, Client] = {}
            for node in nodes:
                for _ in range(2):
                    client = await Client.connect(node.listen_address, collect=True)
                    clients.append(client)
                    uuids[await accepted(node, client)] = client

            async def all_listed() -> bool:
                return await admins[1].socket_uuids() == set(uuids)

            await eventually(all_listed, message="every socket listed")
            on_alpha = clients[0]
            target = client_on(alpha, on_alpha)

            traffic = Traffic(on_alpha)
            await eventually(lambda: traffic is not None and traffic.answered >= 5)

            await asyncio.to_thread(own_redis.stop)
            answered_at_stop = traffic.answered
            await eventually(lambda: _degraded(admins[0]), message="readyz says degraded")
            for admin in admins[1:]:
                assert await _degraded(admin)
            await eventually(
                lambda: all(not n.fleet_ok and not n.bus.connected for n in nodes),
                timeout=10,
                message="every node noticed the outage (heartbeat and bus)",
            )
            # a socket opened during the outage is served, and listed once Redis is back
            late = await Client.connect(nodes[2].listen_address, collect=True)
            clients.append(late)
            await late.round_trip(b"<late>")
            uuids[client_on(nodes[2], late)] = late
            await eventually(
                lambda: traffic is not None and traffic.answered >= answered_at_stop + 50,
                timeout=10,
                message="echo round trips during the outage",
            )
            during = traffic.answered - answered_at_stop
            assert not traffic.failures
            # the listing answers with the node's own sockets, and says it is partial
            for node, admin in zip(nodes, admins, strict=True):
                status, page = await admin.call("GET", "/v1/sockets")
                assert status == 200, page
                assert page["partial"] is True
                assert {item["uuid"] for item in page["items"]} == set(node.sessions)

            await asyncio.to_thread(own_redis.start)
            restarted = time.monotonic()

            async def recovered() -> bool:
                for admin in admins:
                    if await admin.socket_uuids() != set(uuids):
                        return False
                status, _ = await admins[1].call(
                    "POST", f"/v1/sockets/{target}/send", {"text": "[after]"}
                )
                return status == 200

            await eventually(recovered, timeout=10, interval=0.05, message="fleet recovered")
            await on_alpha.expect(b"[after]")
            took = time.monotonic() - restarted
            print(
                f"\nredis back: sockets listed and cross-node send working after {took:.2f} s "
                f"({during} local round trips during the outage)"
            )
            assert took < RECOVERY_LIMIT
            assert await bravo.fleet.list_nodes()
            assert {record.node_id for record in await bravo.fleet.list_nodes()} == {
                node.node_id for node in nodes
            }
            for admin in admins:
                status, body = await admin.call("GET", "/readyz")
                assert status == 200, body
            for uuid in uuids:
                assert await registered(bravo, uuid)
            # no live node was taken for dead while the fleet re-registered itself
            events = [event for _, handler in upstreams for event in handler.events]
            gone = [(e.client_uuid, e.reason) for e in events if e.event == "disconnected"]
            assert gone == []
            assert {e.client_uuid for e in events if e.event == "connected"} == set(uuids)
            await traffic.stop()
            assert not traffic.failures, traffic.failures
            assert traffic.answered > answered_at_stop + during
        finally:
            if traffic is not None:
                with contextlib.suppress(Exception):
                    await traffic.stop()
            await close_all(clients)
            await stop_nodes(nodes)


async def _degraded(admin: Admin) -> bool:
    status, body = await admin.call("GET", "/readyz")
    return status == 200 and body.get("fleet") == "degraded"
