"""Three in-process nodes on one Redis, two upstreams: any node acts on any socket.

Each test gets its own key prefix, so its fleet shares nothing with the others. Sockets are
real TCP connections; upstreams are real gRPC servers (the SDK's ``UpstreamServer``).
"""

from __future__ import annotations

import time
import uuid as uuidlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
import pytest
import pytest_asyncio

from paradoxplex.node.node import Node
from paradoxplex.shared.fleet import NodeRecord
from paradoxplex.shared.incarnations import new_incarnation
from paradoxplex.upstream import Handler, Message, Outbox, UpstreamServer
from paradoxplex.wire import upstream_pb2 as pb
from tests.conftest import delete_prefix
from tests.support.client import Client, close_all
from tests.support.eventually import eventually
from tests.support.fleet import (
    Admin,
    Tagged,
    accepted,
    registered,
    start_fleet,
    start_upstream,
    stop_nodes,
    upstream_broadcast,
)

IDS = ("alpha", "bravo", "charlie")


@dataclass
class Fleet:
    nodes: list[Node]
    upstreams: list[UpstreamServer]
    http: aiohttp.ClientSession
    clients: list[Client] = field(default_factory=list)

    @property
    def admins(self) -> list[Admin]:
        return [Admin(node.admin_url, self.http) for node in self.nodes]

    async def connect(self, index: int) -> Client:
        client = await Client.connect(self.nodes[index].listen_address, collect=True)
        self.clients.append(client)
        return client

    async def connect_each(self, per_node: int) -> list[tuple[Client, str]]:
        """``per_node`` sockets on every node, each registered fleet-wide: (client, uuid)."""
        made = []
        for index in range(len(self.nodes)):
            for _ in range(per_node):
                client = await self.connect(index)
                made.append((client, await self.uuid(index, client)))
        return made

    async def uuid(self, index: int, client: Client) -> str:
        """The socket's uuid, once every node can look it up in the fleet."""
        found = await accepted(self.nodes[index], client)
        await eventually(lambda: registered(self.nodes[0], found), message=f"{found} registered")
        return found

    async def close(self) -> None:
        await close_all(self.clients)
        await stop_nodes(self.nodes)
        for upstream in self.upstreams:
            await upstream.stop(0)
        await self.http.close()


class MakeFleet(Protocol):
    def __call__(
        self, handlers: Sequence[Handler | None] = ..., **extra: Any
    ) -> Awaitable[Fleet]: ...


@pytest_asyncio.fixture
async def make_fleet(redis_url: str, key_prefix: str) -> AsyncIterator[MakeFleet]:
    made: list[Fleet] = []

    async def make(handlers: Sequence[Handler | None] = (None, None), **extra: Any) -> Fleet:
        upstreams = []
        addresses = []
        for handler in handlers:
            server, address = await start_upstream(handler)
            upstreams.append(server)
            addresses.append(address)
        http = aiohttp.ClientSession()
        fleet = Fleet([], upstreams, http)
        made.append(fleet)
        fleet.nodes = await start_fleet(redis_url, key_prefix, addresses, ids=IDS, **extra)
        return fleet

    try:
        yield make
    finally:
        for fleet in made:
            await fleet.close()
        await delete_prefix(redis_url, key_prefix)


@pytest_asyncio.fixture
async def fleet(make_fleet: MakeFleet) -> Fleet:
    return await make_fleet()


async def delivered_once(
    sockets: Sequence[tuple[Client, str]],
    token: bytes,
    expected: set[str],
    sentinel: Callable[[], Awaitable[None]],
    marker: bytes,
    marked: set[str] | None = None,
) -> None:
    """``token`` reaches exactly the sockets in ``expected``, once each.

    The sentinel ``marker`` is sent after the token along the same path, to the sockets in
    ``marked`` (default: ``expected``); once they all have it, any duplicate or stray copy of
    the token would already have arrived too.
    """
    for client, uuid in sockets:
        if uuid in expected:
            await client.expect(token)
    await sentinel()
    for client, uuid in sockets:
        if uuid in (expected if marked is None else marked):
            await client.expect(marker)
    counts = {uuid: client.count(token) for client, uuid in sockets}
    assert counts == {uuid: int(uuid in expected) for _, uuid in sockets}


# -- replies cross nodes -----------------------------------------------------------------


async def test_a_reply_arriving_on_another_nodes_stream_reaches_the_socket(fleet: Fleet) -> None:
    alpha, bravo, charlie = fleet.nodes
    client = await fleet.connect(0)
    uuid = await fleet.uuid(0, client)

    for index, node in ((1, bravo), (2, charlie)):
        payload = f"via node {index}".encode()
        pending = node.replies.receive_reply(
            pb.OutputStreamRequest(client_uuid=uuid, payload=payload)
        )
        assert pending is not None, "a reply for another node's socket is not written locally"
        await pending
        await client.expect(payload)
    assert uuid in alpha.sessions


class CrossOver:
    """Shared by two upstreams: answers each socket on a stream of a node that does not hold it.

    Lifecycle events tell which node a stream (an ``Outbox``) belongs to, and where each
    socket lives; a data message is answered on another node's stream.
    """

    def __init__(self) -> None:
        self.outboxes: dict[str, Outbox] = {}
        self.owners: dict[str, str] = {}
        self.crossed: list[tuple[str, str]] = []

    def __call__(self, message: Message, out: Outbox) -> None:
        if message.event == "connected":
            self.owners[message.client_uuid] = message.node_id
            self.outboxes[message.node_id] = out
        if message.event:
            return
        owner = self.owners[message.client_uuid]
        other = next(node for node in sorted(self.outboxes) if node != owner)
        self.crossed.append((owner, other))
        out_other = self.outboxes[other]
        out_other.reply(message.client_uuid, b"<" + other.encode() + b":" + message.payload + b">")


async def test_an_upstream_answering_on_the_other_nodes_stream_reaches_the_socket(
    make_fleet: MakeFleet,
) -> None:
    handler = CrossOver()
    fleet = await make_fleet((handler, handler), lifecycle_events=True)
    on_bravo = await fleet.connect(1)
    on_alpha = await fleet.connect(0)
    uuid_alpha = await fleet.uuid(0, on_alpha)
    uuid_bravo = await fleet.uuid(1, on_bravo)
    await eventually(
        lambda: {uuid_alpha, uuid_bravo} <= handler.owners.keys(), message="connected events"
    )

    for number in range(4):
        await on_alpha.send(b"a%d;" % number)
        await on_alpha.expect(b"<bravo:a%d;>" % number)
        await on_bravo.send(b"b%d;" % number)
        await on_bravo.expect(b"<alpha:b%d;>" % number)
    assert handler.crossed
    assert all(owner != answered_on for owner, answered_on in handler.crossed)


# -- broadcasts --------------------------------------------------------------------------


async def test_an_admin_broadcast_reaches_every_socket_of_every_node_once(fleet: Fleet) -> None:
    sockets = await fleet.connect_each(2)
    everyone = {uuid for _, uuid in sockets}
    bravo = fleet.admins[1]

    async def sentinel() -> None:
        await bravo.ok("POST", "/v1/broadcast", {"target": "all", "text": "[end]"})

    answer = await bravo.ok("POST", "/v1/broadcast", {"target": "all", "text": "[hello]"})
    assert answer["delivered_local"] == 2
    await delivered_once(sockets, b"[hello]", everyone, sentinel, b"[end]")


async def test_an_upstream_broadcast_reaches_every_socket_of_every_node_once(fleet: Fleet) -> None:
    sockets = await fleet.connect_each(2)
    everyone = {uuid for _, uuid in sockets}
    sender, _ = sockets[2]  # on bravo

    async def sentinel() -> None:
        await upstream_broadcast(sender, b"[end]")

    await upstream_broadcast(sender, b"[hello]")
    await delivered_once(sockets, b"[hello]", everyone, sentinel, b"[end]")
    # a broadcast handed to a node as if its upstream stream carried it
    pending = fleet.nodes[2].replies.receive_reply(
        pb.OutputStreamRequest(broadcast=pb.BROADCAST_ALL, payload=b"[injected]")
    )
    assert pending is not None
    await pending

    async def injected_end() -> None:
        again = fleet.nodes[2].replies.receive_reply(
            pb.OutputStreamRequest(broadcast=pb.BROADCAST_ALL, payload=b"[end2]")
        )
        assert again is not None
        await again

    await delivered_once(sockets, b"[injected]", everyone, injected_end, b"[end2]")


@pytest.mark.parametrize("source", ["admin", "upstream"])
async def test_broadcast_filters_apply_to_sockets_on_every_node(fleet: Fleet, source: str) -> None:
    sockets = await fleet.connect_each(2)
    everyone = {uuid for _, uuid in sockets}
    alpha, bravo, charlie = fleet.admins
    paused = sockets[4][1]  # on charlie, paused through alpha
    labelled = sockets[3][1]  # on bravo, labelled through charlie
    await alpha.ok("POST", f"/v1/sockets/{paused}/pause")
    await charlie.ok("PUT", f"/v1/sockets/{labelled}/labels", {"team": "red"})
    sender, _ = sockets[0]  # on alpha, active and unlabelled: it also gets the sentinels

    async def send(text: bytes, target: str, label: str = "") -> None:
        if source == "admin":
            body: dict[str, Any] = {"target": target, "text": text.decode()}
            if label:
                body["label"] = label
            await bravo.ok("POST", "/v1/broadcast", body)
        else:
            await upstream_broadcast(sender, text, target=target, label=label)

    reach = {"all": everyone, "active": everyone - {paused}, "inactive": {paused}}
    cases = [
        (b"[active]", "active", "", everyone - {paused}),
        (b"[inactive]", "inactive", "", {paused}),
        (b"[red]", "all", "team=red", {labelled}),
        (b"[red-active]", "active", "team=red", {labelled}),
        (b"[red-inactive]", "inactive", "team=red", set()),
    ]
    for number, (token, target, label, expected) in enumerate(cases):
        marker = b"[end%d]" % number

        async def sentinel(marker: bytes = marker, target: str = target) -> None:
            await send(marker, target)

        await send(token, target, label)
        await delivered_once(sockets, token, expected, sentinel, marker, reach[target])


# -- the admin API of any node -------------------------------------------------------------


async def test_any_node_pauses_messages_labels_and_closes_a_socket_on_another(
    fleet: Fleet,
) -> None:
    client = await fleet.connect(0)
    uuid = await fleet.uuid(0, client)
    charlie = fleet.admins[2]

    await charlie.ok("POST", f"/v1/sockets/{uuid}/send", {"text": "from charlie"})
    await client.expect(b"from charlie")
    await charlie.ok("POST", f"/v1/sockets/{uuid}/send", {"base64": "AAEC/w=="})
    await client.expect(b"\x00\x01\x02\xff")

    await charlie.ok("POST", f"/v1/sockets/{uuid}/pause")
    assert (await charlie.ok("GET", f"/v1/sockets/{uuid}"))["state"] == "paused"
    assert uuid in await charlie.socket_uuids("state=paused")
    info = fleet.nodes[0].sessions[uuid].info
    assert info is not None
    read_before = info.bytes_in
    await client.send(b"while-paused;")
    # a round trip through the bus to alpha: time for alpha to read, were it reading
    await charlie.ok("POST", f"/v1/sockets/{uuid}/send", {"text": "[paused-marker]"})
    await client.expect(b"[paused-marker]")
    assert info.bytes_in == read_before, "a paused socket was read"
    assert client.count(b"while-paused;") == 0
    await charlie.ok("POST", f"/v1/sockets/{uuid}/resume")
    await client.expect(b"while-paused;")
    assert (await charlie.ok("GET", f"/v1/sockets/{uuid}"))["state"] == "active"

    await charlie.ok("PUT", f"/v1/sockets/{uuid}/labels", {"site": "north", "rack": "7"})
    labels = (await fleet.admins[1].ok("GET", f"/v1/sockets/{uuid}"))["labels"]
    assert labels == {"site": "north", "rack": "7"}
    assert await charlie.socket_uuids("label=site=north") == {uuid}

    status, _ = await charlie.call("DELETE", f"/v1/sockets/{uuid}")
    assert status == 204
    await eventually(lambda: client.eof, message="the socket closed")
    await eventually(
        lambda: _absent(charlie, uuid), timeout=2, message="closed socket leaves the list"
    )


async def _absent(admin: Admin, uuid: str) -> bool:
    status, _ = await admin.call("GET", f"/v1/sockets/{uuid}")
    return status == 404 and uuid not in await admin.socket_uuids()


async def test_socket_list_pages_through_every_nodes_sockets(fleet: Fleet) -> None:
    sockets = await fleet.connect_each(2)
    everyone = {uuid for _, uuid in sockets}
    charlie = fleet.admins[2]

    pages: list[list[str]] = []
    cursor = None
    while True:
        query = "limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = await charlie.ok("GET", f"/v1/sockets?{query}")
        pages.append([item["uuid"] for item in page["items"]])
        cursor = page["cursor"]
        if cursor is None:
            break
        assert len(pages) < 10, "the cursor does not advance"
    listed = [uuid for page in pages for uuid in page]
    assert all(len(page) <= 2 for page in pages)
    assert len(listed) == len(set(listed)), "a socket was listed twice"
    assert set(listed) == everyone
    assert len(pages) >= 3
    nodes = {item["node"] for item in await charlie.sockets()}
    assert nodes == set(IDS)
    by_node = await charlie.socket_uuids("node=alpha&limit=1")
    assert by_node == {uuid for _, uuid in sockets[:2]}


async def test_a_cursor_the_api_never_gave_out_is_400(fleet: Fleet) -> None:
    status, answer = await fleet.admins[0].call("GET", "/v1/sockets?cursor=not-a-cursor")
    assert status == 400, answer
    assert answer["error"] == {
        "code": "bad_request",
        "message": "cursor: not a cursor this API gave out",
    }


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("GET", "", None),
        ("POST", "/send", {"text": "x"}),
        ("POST", "/pause", None),
        ("PUT", "/labels", {"a": "b"}),
        ("DELETE", "", None),
    ],
)
async def test_an_unknown_socket_is_404_on_every_node(
    fleet: Fleet, method: str, suffix: str, body: Any
) -> None:
    unknown = str(uuidlib.uuid4())
    for admin in fleet.admins:
        status, answer = await admin.call(method, f"/v1/sockets/{unknown}{suffix}", body)
        assert status == 404, answer
        assert answer["error"]["code"] == "not_found"


@pytest.mark.slow
async def test_an_owner_that_does_not_answer_is_504_naming_it(fleet: Fleet) -> None:
    client = await fleet.connect(0)
    uuid = await fleet.uuid(0, client)
    charlie = fleet.admins[2]
    await fleet.nodes[0].bus.close()  # alpha stops listening to the bus, and stays alive

    for method, suffix, body in (
        ("POST", "/send", {"text": "x"}),
        ("POST", "/pause", None),
        ("DELETE", "", None),
    ):
        started = time.monotonic()
        status, answer = await charlie.call(method, f"/v1/sockets/{uuid}{suffix}", body)
        assert status == 504, answer
        assert answer["error"]["code"] == "owner_timeout"
        assert "alpha" in answer["error"]["message"]
        assert time.monotonic() - started < 3.0
    assert client.count(b"x") == 0
    assert not client.eof


@pytest.mark.parametrize(("state", "answered"), [("starting", 404), ("up", 504)])
async def test_a_node_still_starting_is_not_waited_for(
    fleet: Fleet, state: str, answered: int
) -> None:
    """A node that claimed its id but reads no bus yet (a restart a moment ago) cannot say
    no: an unknown socket is a 404 without it; the same node up and silent makes it a 504."""
    fleet_state = fleet.nodes[0].fleet
    record = NodeRecord("delta", "127.0.0.1:9", "", started_at=time.time(), state=state)
    record.incarnation = new_incarnation()
    assert await fleet_state.register_node(record, ttl=10.0) is None
    try:
        status, answer = await fleet.admins[2].call("GET", f"/v1/sockets/{uuidlib.uuid4()}")
        assert status == answered, answer
    finally:
        await fleet_state.unregister_node("delta")


async def test_a_socket_closed_by_its_client_leaves_the_fleet_list_within_2s(
    fleet: Fleet,
) -> None:
    client = await fleet.connect(1)
    uuid = await fleet.uuid(1, client)
    charlie = fleet.admins[2]
    assert uuid in await charlie.socket_uuids()
    await client.aclose()
    took = await eventually(lambda: _absent(charlie, uuid), timeout=2.0)
    print(f"closed socket left /v1/sockets after {took:.2f} s")


# -- upstreams, fleet-wide -------------------------------------------------------------------


async def _views(admin: Admin, upstream_id: str) -> dict[str, Any]:
    for item in (await admin.ok("GET", "/v1/upstreams"))["items"]:
        if item["id"] == upstream_id:
            record: dict[str, Any] = item
            return record
    return {}


async def _ready_everywhere(fleet: Fleet, upstream_id: str) -> bool:
    for admin in fleet.admins:
        record = await _views(admin, upstream_id)
        nodes = record.get("nodes", {})
        if set(nodes) != set(IDS) or not all(view["ready"] for view in nodes.values()):
            return False
    return True


async def test_an_upstream_added_through_one_node_serves_every_node(
    fleet: Fleet,
) -> None:
    alpha, bravo, charlie = fleet.admins
    u3_handler, u4_handler = Tagged(b"u3:"), Tagged(b"u4:")
    u3, u3_address = await start_upstream(u3_handler)
    u4, u4_address = await start_upstream(u4_handler)
    fleet.upstreams += [u3, u4]
    u3_id, u4_id = str(u3_address), str(u4_address)
    spec = {"host": u3_address.host, "port": u3_address.port, "ready_timeout": 2}

    status, answer = await alpha.call("POST", "/v1/upstreams", spec)
    assert status == 201, answer
    status, answer = await bravo.call("POST", "/v1/upstreams", spec)
    assert status == 409, answer
    await eventually(lambda: _ready_everywhere(fleet, u3_id), message="u3 ready on every node")

    for item in (await bravo.ok("GET", "/v1/upstreams"))["items"]:
        if item["id"] != u3_id:
            status, _ = await bravo.call("DELETE", f"/v1/upstreams/{item['id']}")
            assert status == 204
    await eventually(
        lambda: all(set(node.pool.links) == {u3_id} for node in fleet.nodes),
        message="only u3 left on every node",
    )
    assert {item["id"] for item in (await charlie.ok("GET", "/v1/upstreams"))["items"]} == {u3_id}

    clients = [await fleet.connect(index) for index in range(3)]
    for index, client in enumerate(clients):
        await client.send(b"m%d;" % index)
        await client.expect(b"u3:m%d;" % index)
    assert u3_handler.messages == 3

    status, _ = await charlie.call(
        "POST", "/v1/upstreams", {"host": u4_address.host, "port": u4_address.port}
    )
    assert status == 201
    await eventually(lambda: _ready_everywhere(fleet, u4_id), message="u4 ready on every node")
    drained = await alpha.ok("POST", f"/v1/upstreams/{u3_id}/drain")
    assert drained["mode"] == "draining"

    async def draining_everywhere() -> bool:
        for admin in fleet.admins:
            record = await _views(admin, u3_id)
            views = record.get("nodes", {})
            if record.get("mode") != "draining" or set(views) != set(IDS):
                return False
            if any(view["state"] != "draining" or view["ready"] for view in views.values()):
                return False
        return True

    await eventually(draining_everywhere, message="u3 draining on every node")
    before = u3_handler.messages
    for index, client in enumerate(clients):
        for number in range(4):
            await client.send(b"d%d-%d;" % (index, number))
            await client.expect(b"u4:d%d-%d;" % (index, number))
    assert u3_handler.messages == before, "a drained upstream got new traffic"
    status, _ = await charlie.call("DELETE", f"/v1/upstreams/{uuidlib.uuid4()}")
    assert status == 404
