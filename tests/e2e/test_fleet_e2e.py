"""A fleet of ``paradoxplex node`` processes on one Redis, with two ``upstream-echo`` processes.

What only processes can show: a node killed without warning (SIGKILL) is cleaned up by exactly
one survivor, and a node that stops answering (SIGSTOP) makes the others answer 504.
"""

from __future__ import annotations

import asyncio
import re
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import pytest
import pytest_asyncio

from tests.conftest import delete_prefix
from tests.support.client import Client, close_all
from tests.support.eventually import eventually
from tests.support.fleet import (
    Admin,
    NodeProc,
    Proc,
    echo_address,
    spawn_echo,
    spawn_node,
    stop_all,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CLEANUP_LIMIT = 15.0


@dataclass
class ProcFleet:
    nodes: list[NodeProc]
    echoes: list[Proc]
    http: aiohttp.ClientSession
    clients: list[Client] = field(default_factory=list)

    def admin(self, index: int) -> Admin:
        return Admin(self.nodes[index].admin_url, self.http)

    async def connect(self, index: int) -> tuple[Client, str]:
        client = await Client.connect(self.nodes[index].listen, collect=True)
        self.clients.append(client)
        return client, await self.admin(index).uuid_of(client)


StartFleet = Callable[..., Awaitable[ProcFleet]]


@pytest_asyncio.fixture
async def proc_fleet(redis_url: str, key_prefix: str) -> AsyncIterator[StartFleet]:
    """Start 2 echo upstreams and 3 nodes (``n1``..``n3``); everything is killed afterwards."""
    procs: list[Proc] = []
    fleets: list[ProcFleet] = []

    async def start(*extra: str) -> ProcFleet:
        echoes = [spawn_echo(f"echo{i}") for i in (1, 2)]
        procs.extend(echoes)
        upstreams = [await echo_address(echo) for echo in echoes]
        nodes = [spawn_node(redis_url, key_prefix, f"n{i}", upstreams, *extra) for i in (1, 2, 3)]
        procs.extend(nodes)
        for node in nodes:
            await node.started()
        fleet = ProcFleet(nodes, echoes, aiohttp.ClientSession())
        fleets.append(fleet)
        await eventually(
            lambda: _all_nodes_listed(fleet), timeout=10, message="3 nodes in /v1/nodes"
        )
        return fleet

    try:
        yield start
    finally:
        for fleet in fleets:
            await close_all(fleet.clients)
            await fleet.http.close()
        stop_all(procs)
        await delete_prefix(redis_url, key_prefix)


async def _all_nodes_listed(fleet: ProcFleet) -> bool:
    wanted = {node.node_id for node in fleet.nodes}
    return all([await fleet.admin(i).node_ids() == wanted for i in range(len(fleet.nodes))])


def disconnected(echoes: list[Proc], uuid: str) -> int:
    """How many DISCONNECTED events for ``uuid`` the upstreams logged, all together."""
    line = re.compile(rb"socket " + re.escape(uuid.encode()) + rb" disconnected")
    return sum(len(line.findall(echo.stderr())) for echo in echoes)


async def test_a_killed_node_is_cleaned_up_by_exactly_one_survivor(
    proc_fleet: StartFleet,
) -> None:
    fleet = await proc_fleet("--lifecycle-events")
    victim = fleet.nodes[2]
    doomed = [await fleet.connect(2) for _ in range(2)]
    survivors = [await fleet.connect(0), await fleet.connect(1)]
    doomed_ids = {uuid for _, uuid in doomed}
    first = fleet.admin(0)
    assert doomed_ids <= await first.socket_uuids()
    for client, _ in doomed + survivors:
        await client.round_trip(b"<before>")

    victim.kill()
    killed = time.monotonic()

    async def cleaned_up() -> bool:
        for index in (0, 1):
            admin = fleet.admin(index)
            if victim.node_id in await admin.node_ids():
                return False
            if doomed_ids & await admin.socket_uuids():
                return False
        return True

    await eventually(cleaned_up, timeout=CLEANUP_LIMIT + 5, interval=0.1)
    took = time.monotonic() - killed
    print(f"\nSIGKILLed node and its sockets left the fleet's lists after {took:.2f} s")
    assert took < CLEANUP_LIMIT
    for uuid in doomed_ids:
        status, _ = await first.call("GET", f"/v1/sockets/{uuid}")
        assert status == 404

    await eventually(
        lambda: all(disconnected(fleet.echoes, uuid) >= 1 for uuid in doomed_ids),
        message="DISCONNECTED events for the dead node's sockets",
    )
    # Sentinels: echoes through both upstreams of both survivors. Each link is one ordered
    # stream, and the survivors queued their events before the sockets left the list, so
    # once these come back every event already reached an upstream (and its log).
    for client, _ in survivors:
        for number in range(4):
            await client.round_trip(b"<after%d>" % number)
    counts = {uuid: disconnected(fleet.echoes, uuid) for uuid in doomed_ids}
    assert counts == dict.fromkeys(doomed_ids, 1)
    for _, uuid in survivors:
        assert disconnected(fleet.echoes, uuid) == 0


async def test_a_node_that_stops_answering_makes_the_others_answer_504(
    proc_fleet: StartFleet,
) -> None:
    fleet = await proc_fleet("--owner-timeout", "1")
    owner = fleet.nodes[0]
    client, uuid = await fleet.connect(0)
    third = fleet.admin(2)
    await client.round_trip(b"<echo>")
    await third.ok("POST", f"/v1/sockets/{uuid}/send", {"text": "<via n3>"})
    await client.expect(b"<via n3>")

    owner.signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        status, answer = await third.call("POST", f"/v1/sockets/{uuid}/send", {"text": "<lost>"})
        waited = time.monotonic() - started
        assert status == 504, answer
        assert answer["error"]["code"] == "owner_timeout"
        assert owner.node_id in answer["error"]["message"]
        assert answer["error"]["outcome"] == "unknown", "the command waits in its inbox"
        assert waited < 2.5
        # what Redis knows still answers without the owner
        record = await third.ok("GET", f"/v1/sockets/{uuid}")
        assert record["node"] == owner.node_id
    finally:
        owner.signal(signal.SIGCONT)

    await third.ok("POST", f"/v1/sockets/{uuid}/send", {"text": "<back>"})
    await client.expect(b"<back>")
    await client.round_trip(b"<echo again>")
    # a 504 leaves the outcome unknown: the stopped owner may still act on the command when
    # it resumes (it waited in Redis for it), but never twice
    assert client.count(b"<lost>") <= 1
    # the other nodes' sockets were never affected
    other, other_uuid = await fleet.connect(1)
    await other.round_trip(b"<fine>")
    await asyncio.wait_for(third.ok("POST", f"/v1/sockets/{other_uuid}/pause"), 5)
