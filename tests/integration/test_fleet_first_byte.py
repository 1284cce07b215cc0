"""A socket is known fleet-wide from its first byte.

An upstream that reacts to a socket's first message through ANOTHER node's admin API (list
it, look it up, send to it, close it) must find it every time: nothing reaches an upstream
before the fleet knows the socket. Real nodes on one Redis, a real gRPC upstream, real TCP
clients opened at about 1,000 per second.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import aiohttp

from paradoxplex.upstream import Message, Outbox
from tests.conftest import delete_prefix
from tests.support.client import Client, close_all
from tests.support.eventually import eventually
from tests.support.fleet import start_fleet, start_upstream, stop_nodes

SOCKETS = 500
PER_BATCH = 50  # opened together, then the next batch: about 1,000 sockets a second


class ReactingUpstream:
    """On each socket's first message: GET it, send to it and close it via another node."""

    def __init__(self) -> None:
        self.admin_url = ""
        self.http: aiohttp.ClientSession | None = None
        self.seen: set[str] = set()
        self.answers: Counter[tuple[str, int]] = Counter()
        self.listed = 0
        self._tasks: set[asyncio.Task[None]] = set()

    def __call__(self, message: Message, out: Outbox) -> None:
        if message.event or message.client_uuid in self.seen:
            return
        self.seen.add(message.client_uuid)
        task = asyncio.create_task(self._react(message.client_uuid))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _react(self, uuid: str) -> None:
        assert self.http is not None
        before = f"{int(uuid.replace('-', ''), 16) - 1:032x}"  # a cursor just before it
        listing = f"{self.admin_url}/v1/sockets?limit=1&cursor={before}"
        async with self.http.get(listing) as answer:
            page = await answer.json()
            self.listed += [item["uuid"] for item in page["items"]] == [uuid]
        base = f"{self.admin_url}/v1/sockets/{uuid}"
        for method, path, body in (
            ("GET", "", None),
            ("POST", "/send", {"text": "from-the-other-node"}),
            ("DELETE", "", None),
        ):
            async with self.http.request(method, base + path, json=body) as answer:
                self.answers[(method, answer.status)] += 1


async def test_another_node_finds_a_socket_as_soon_as_an_upstream_saw_it(
    redis_url: str, key_prefix: str
) -> None:
    handler = ReactingUpstream()
    server, address = await start_upstream(handler)
    # a generous owner timeout: this test is about 404s, not about a loaded machine's 504s
    nodes = await start_fleet(redis_url, key_prefix, [address], ids=("a", "b"), owner_timeout=5.0)
    clients: list[Client] = []
    try:
        async with aiohttp.ClientSession() as http:
            handler.http, handler.admin_url = http, nodes[1].admin_url
            loop = asyncio.get_running_loop()
            for _ in range(SOCKETS // PER_BATCH):
                began = loop.time()
                batch = await asyncio.gather(
                    *(
                        Client.connect(nodes[0].listen_address, collect=True)
                        for _ in range(PER_BATCH)
                    )
                )
                clients.extend(batch)
                await asyncio.gather(*(client.send(b"first") for client in batch))
                await asyncio.sleep(max(0.0, began + PER_BATCH / 1000 - loop.time()))
            await eventually(
                lambda: sum(handler.answers.values()) == 3 * SOCKETS,
                timeout=30,
                message="the upstream's admin calls answered",
            )
            await eventually(
                lambda: all(c.eof and c.count(b"from-the-other-node") == 1 for c in clients),
                timeout=10,
                message="every socket got the other node's send, then was closed",
            )
        assert handler.listed == SOCKETS
        assert handler.answers == {
            ("GET", 200): SOCKETS,
            ("POST", 200): SOCKETS,
            ("DELETE", 204): SOCKETS,
        }
    finally:
        await close_all(clients)
        await stop_nodes(nodes)
        await server.stop(0)
        await delete_prefix(redis_url, key_prefix)


async def test_a_socket_missing_from_the_fleet_state_is_found_by_asking_the_nodes(
    redis_url: str, key_prefix: str
) -> None:
    """What an admin miss looks like while Redis is being refilled after an empty restart."""
    server, address = await start_upstream()
    nodes = await start_fleet(redis_url, key_prefix, [address], ids=("a", "b"))
    client = await Client.connect(nodes[0].listen_address, collect=True)
    try:
        async with aiohttp.ClientSession() as http:
            await client.round_trip(b"hello")
            (uuid,) = nodes[0].sessions
            await nodes[0].fleet.unregister_sessions([(uuid, "a")])
            assert await nodes[1].fleet.lookup_session(uuid) is None
            other = nodes[1].admin_url + f"/v1/sockets/{uuid}"
            async with http.get(other) as answer:
                assert answer.status == 200
                assert (await answer.json())["node"] == "a"
            async with http.post(other + "/send", json={"text": "found"}) as answer:
                assert answer.status == 200
            await client.expect(b"found")
            loop = asyncio.get_running_loop()
            began = loop.time()
            nowhere = nodes[1].admin_url + "/v1/sockets/00000000-0000-4000-8000-000000000000"
            async with http.get(nowhere) as answer:
                assert answer.status == 404
            assert loop.time() - began < 0.5  # every other node said no: no waiting it out
    finally:
        await client.aclose()
        await stop_nodes(nodes)
        await server.stop(0)
        await delete_prefix(redis_url, key_prefix)
