"""Redis goes away mid-test (a server of the test's own, never the session's).

What must hold: fleet calls fail fast with FleetUnavailable; the bus notices, holds what is
sent meanwhile (up to its ``hold``), and once Redis is back it reads again, calls
``on_reconnect`` and delivers what it held and what comes next, all within 5 s; after
``hold`` seconds of outage a send fails with FleetUnavailable.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
import pytest_asyncio

from paradoxplex.node.fleet.redis import RedisFleet
from paradoxplex.shared.errors import FleetUnavailable
from paradoxplex.shared.fleet import NodeRecord
from paradoxplex.shared.sessions import SessionInfo
from paradoxplex.shared.upstreams import UpstreamSpec
from tests.support.bus import redis_bus
from tests.support.eventually import eventually
from tests.support.redis_server import RedisServer
from tests.support.state import redis_state, register_session, update_session

PROMPT = 3.0  # a fleet call while Redis is down fails within this
RECOVERY = 5.0  # cross-node delivery works again within this once Redis is back

log = logging.getLogger(__name__)


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with RedisServer() as redis_server:
        yield redis_server


@pytest_asyncio.fixture
async def fleet(server: RedisServer, key_prefix: str) -> AsyncIterator[RedisFleet]:
    state = redis_state(server.url, prefix=key_prefix)
    await state.start()
    try:
        yield state
    finally:
        await state.close()


class Node:
    """A bus with an inbox, counting its reconnections."""

    def __init__(self, url: str, *, prefix: str, **options: Any) -> None:
        self.bus = redis_bus(url, prefix=prefix, **options)
        self.inbox: list[bytes] = []
        self.reconnected = 0

    async def receive(self, envelope: bytes) -> None:
        self.inbox.append(envelope)

    async def on_reconnect(self) -> None:
        self.reconnected += 1


MakeNode = Callable[..., Awaitable[Node]]


@pytest_asyncio.fixture
async def make_node(server: RedisServer, key_prefix: str) -> AsyncIterator[MakeNode]:
    nodes: list[Node] = []

    async def make(node_id: str, **options: Any) -> Node:
        node = Node(server.url, prefix=key_prefix, **options)
        nodes.append(node)
        await node.bus.start(node_id, node.receive, on_reconnect=node.on_reconnect)
        return node

    yield make
    for node in nodes:
        await node.bus.close()


def fleet_calls(fleet: RedisFleet) -> dict[str, Callable[[], Awaitable[object]]]:
    info = SessionInfo("00000000-0000-4000-8000-000000000001", "node-a", "10.0.0.1:1", 1.0)
    record = NodeRecord("node-a", "0.0.0.0:7999", "http://a:8000", 1.0)
    return {
        "register_node": lambda: fleet.register_node(record, ttl=5),
        "heartbeat": lambda: fleet.heartbeat(record, ttl=5),
        "list_nodes": fleet.list_nodes,
        "known_nodes": fleet.known_nodes,
        "node_alive": lambda: fleet.node_alive("node-a"),
        "claim_cleanup": lambda: fleet.claim_cleanup("node-b", "node-a", ttl=5),
        "register_sessions": lambda: fleet.register_sessions([info]),
        "update_sessions": lambda: fleet.update_sessions([info]),
        "lookup_session": lambda: fleet.lookup_session(info.client_uuid),
        "list_sessions": lambda: fleet.list_sessions(node=None, cursor=None, limit=10),
        "remove_stale_sessions": lambda: fleet.remove_stale_sessions("node-a"),
        "node_record": lambda: fleet.node_record("node-a"),
        "unregister_sessions": lambda: fleet.unregister_sessions([(info.client_uuid, "node-a")]),
        "unregister_node": lambda: fleet.unregister_node("node-a"),
        "put_upstream": lambda: fleet.put_upstream(UpstreamSpec("10.0.0.1", 45888)),
        "list_upstreams": fleet.list_upstreams,
        "set_health": lambda: fleet.set_health("node-a", "10.0.0.1:45888", {"ready": True}),
        "health_views": fleet.health_views,
    }


async def assert_unavailable_promptly(fleet: RedisFleet) -> None:
    loop = asyncio.get_running_loop()
    for name, call in fleet_calls(fleet).items():
        began = loop.time()
        with pytest.raises(FleetUnavailable):
            await call()
        assert loop.time() - began < PROMPT, f"{name} took too long to fail"
    assert not await fleet.ping()


async def test_fleet_fails_fast_and_recovers(server: RedisServer, fleet: RedisFleet) -> None:
    record = NodeRecord("node-a", "0.0.0.0:7999", "http://a:8000", 1.0)
    await fleet.register_node(record, ttl=30)
    await asyncio.to_thread(server.stop)

    await assert_unavailable_promptly(fleet)

    await asyncio.to_thread(server.start)  # same port, empty
    await eventually(fleet.ping, timeout=RECOVERY, message="the fleet to answer again")
    assert await fleet.list_nodes() == []
    await fleet.register_node(record, ttl=30)
    assert await fleet.list_nodes() == [record]
    info = SessionInfo("00000000-0000-4000-8000-000000000001", "node-a", "10.0.0.1:1", 1.0)
    await register_session(fleet, info)
    info.bytes_in = 5
    await update_session(fleet, info)  # its script is gone from the new Redis: loaded again
    assert await fleet.lookup_session(info.client_uuid) == info


async def test_a_frozen_redis_fails_within_the_socket_timeout(
    server: RedisServer, fleet: RedisFleet
) -> None:
    assert await fleet.ping()
    server.freeze()
    try:
        loop = asyncio.get_running_loop()
        began = loop.time()
        with pytest.raises(FleetUnavailable):
            await fleet.list_nodes()
        assert loop.time() - began < PROMPT
    finally:
        server.thaw()
    await eventually(fleet.ping, timeout=RECOVERY, message="the fleet to answer again")


async def test_start_on_a_redis_that_is_down(server: RedisServer, key_prefix: str) -> None:
    await asyncio.to_thread(server.stop)
    fleet = redis_state(server.url, prefix=key_prefix)
    node = Node(server.url, prefix=key_prefix)
    try:
        with pytest.raises(FleetUnavailable):
            await fleet.start()
        with pytest.raises(FleetUnavailable):
            await node.bus.start("a", node.receive)
        assert not node.bus.connected
    finally:
        await fleet.close()
        await node.bus.close()


@pytest.mark.parametrize(
    ("how", "down_for"),
    [("stop", 0.0), ("kill", 0.0), ("stop", 2.5)],
    ids=["stop", "kill", "stop-2.5s"],
)
async def test_the_bus_comes_back(
    server: RedisServer, make_node: MakeNode, how: str, down_for: float
) -> None:
    a, b = await make_node("a"), await make_node("b")
    assert await a.bus.send("b", b"before")
    await eventually(lambda: b.inbox == [b"before"])

    await asyncio.to_thread(server.stop if how == "stop" else server.kill)
    await eventually(
        lambda: not a.bus.connected and not b.bus.connected,
        timeout=PROMPT,
        message="both buses to notice that Redis is gone",
    )
    held_send = asyncio.create_task(a.bus.send("b", b"while down"))
    held_broadcast = asyncio.create_task(a.bus.broadcast(b"broadcast while down"))
    await asyncio.sleep(down_for)  # the scenario: how long Redis stays away
    assert not held_send.done()  # held, not failed

    loop = asyncio.get_running_loop()
    began = loop.time()
    await asyncio.to_thread(server.start)  # same port, empty
    await eventually(
        lambda: a.bus.connected and b.bus.connected and a.reconnected == b.reconnected == 1,
        timeout=RECOVERY,
        message="both buses to read again and call on_reconnect",
    )
    assert await asyncio.wait_for(held_send, RECOVERY)
    await asyncio.wait_for(held_broadcast, RECOVERY)
    assert await a.bus.send("b", b"after")
    await b.bus.broadcast(b"broadcast after")
    await eventually(
        lambda: (
            b.inbox == [b"before", b"broadcast while down", b"while down", b"after"]
            or b.inbox == [b"before", b"while down", b"broadcast while down", b"after"]
        ),
        timeout=RECOVERY,
    )
    await eventually(lambda: a.inbox == [b"broadcast after"], timeout=RECOVERY)
    recovered = loop.time() - began
    log.info(
        "bus recovered %.3f s after Redis came back (%s, down %.1f s)", recovered, how, down_for
    )
    print(f"recovery after {how} (down {down_for:g} s): {recovered:.3f} s")
    assert recovered < RECOVERY
    assert (a.bus.reconnects, b.bus.reconnects) == (1, 1)


async def test_the_bus_notices_a_frozen_redis(server: RedisServer, make_node: MakeNode) -> None:
    a = await make_node("a", ping_interval=0.2)
    server.freeze()
    try:
        await eventually(
            lambda: not a.bus.connected, timeout=PROMPT, message="the watchdog to give up"
        )
    finally:
        server.thaw()
    await eventually(
        lambda: a.bus.connected and a.reconnected == 1,
        timeout=RECOVERY,
        message="the bus to resubscribe",
    )
    assert await a.bus.send("a", b"after")
    await eventually(lambda: a.inbox == [b"after"])


async def test_a_send_waiting_for_its_owner_survives_the_owner_reconnecting(
    server: RedisServer, make_node: MakeNode
) -> None:
    """The owner is resubscribing while a sender publishes: the send waits, then lands."""
    a, b = await make_node("a"), await make_node("b")
    await asyncio.to_thread(server.kill)
    await eventually(lambda: not b.bus.connected, timeout=PROMPT)
    await asyncio.to_thread(server.start)
    await eventually(lambda: a.bus.connected or b.bus.connected, timeout=RECOVERY)
    assert await a.bus.send("b", b"late but delivered")
    await eventually(lambda: b.inbox == [b"late but delivered"], timeout=RECOVERY)


async def test_a_send_held_longer_than_hold_fails(server: RedisServer, make_node: MakeNode) -> None:
    a = await make_node("a", hold=0.3)
    await asyncio.to_thread(server.stop)
    await eventually(lambda: not a.bus.connected, timeout=PROMPT)
    loop = asyncio.get_running_loop()
    began = loop.time()
    with pytest.raises(FleetUnavailable):
        await a.bus.send("b", b"held too long")
    with pytest.raises(FleetUnavailable):
        await a.bus.broadcast(b"held too long")
    assert loop.time() - began < PROMPT
