"""MemoryFleet / MemoryBus: the single-node fleet and the test double (no I/O)."""

from __future__ import annotations

import uuid

import pytest

from paradoxplex.node.fleet.memory import MemoryBus, MemoryFleet, MemoryHub, memory_backend
from paradoxplex.shared.fleet import FleetBus, FleetState, NodeRecord
from paradoxplex.shared.sessions import SessionInfo, SessionState
from paradoxplex.shared.upstreams import UpstreamMode, UpstreamSpec
from tests.support.bus import Inbox
from tests.support.state import node_sessions, register_session, unregister_session, update_session


def sid(number: int) -> str:
    return str(uuid.UUID(int=number))


def session(number: int, node: str = "a") -> SessionInfo:
    return SessionInfo(sid(number), node, f"10.0.0.1:{number}", float(number))


def node(node_id: str, sockets: int = 0) -> NodeRecord:
    return NodeRecord(node_id, "0.0.0.0:7999", f"http://{node_id}:8000", 1.0, sockets)


@pytest.fixture
def fleet() -> MemoryFleet:
    return MemoryFleet()


def test_the_protocols_are_met() -> None:
    state: FleetState = MemoryFleet()
    bus: FleetBus = MemoryBus()
    assert state.shared is False
    assert isinstance(bus, MemoryBus)


async def test_lifecycle(fleet: MemoryFleet) -> None:
    await fleet.start()
    assert await fleet.ping() is True
    await fleet.close()


# --- nodes ----------------------------------------------------------------------------------


async def test_nodes(fleet: MemoryFleet) -> None:
    await fleet.register_node(node("b"), ttl=10)
    await fleet.register_node(node("a"), ttl=10)
    assert [n.node_id for n in await fleet.list_nodes()] == ["a", "b"]
    assert await fleet.node_alive("a")
    assert not await fleet.node_alive("c")
    await fleet.heartbeat(node("a", sockets=5), ttl=10)
    assert [n.sockets for n in await fleet.list_nodes()] == [5, 0]


async def test_unregister_node_removes_its_sessions(fleet: MemoryFleet) -> None:
    await fleet.register_node(node("a"), ttl=10)
    await fleet.register_node(node("b"), ttl=10)
    for number in range(4):
        await register_session(fleet, session(number, "a" if number % 2 else "b"))
    await fleet.unregister_node("a")
    assert not await fleet.node_alive("a")
    assert await node_sessions(fleet, "a") == []
    assert await fleet.lookup_session(sid(1)) is None
    assert await node_sessions(fleet, "b") == [sid(0), sid(2)]
    page, cursor = await fleet.list_sessions(node=None, cursor=None, limit=10)
    assert ([s.client_uuid for s in page], cursor) == ([sid(0), sid(2)], None)
    assert await fleet.known_nodes() == ["b"]


async def test_known_nodes_include_dead_nodes_with_sessions(fleet: MemoryFleet) -> None:
    await fleet.register_node(node("a"), ttl=10)
    await register_session(fleet, session(1, "ghost"))
    assert await fleet.known_nodes() == ["a", "ghost"]
    assert not await fleet.node_alive("ghost")
    await fleet.unregister_node("ghost")
    assert await fleet.known_nodes() == ["a"]


async def test_exactly_one_claims_a_cleanup(fleet: MemoryFleet) -> None:
    assert await fleet.claim_cleanup("dead", "b", ttl=5) is True
    assert await fleet.claim_cleanup("dead", "c", ttl=5) is False
    assert await fleet.claim_cleanup("dead", "b", ttl=5) is False
    assert await fleet.claim_cleanup("other", "c", ttl=5) is True


def test_node_record_round_trip() -> None:
    record = node("a", sockets=3)
    assert NodeRecord.from_dict(record.to_dict()) == record
    assert record.to_dict()["id"] == "a"


def test_node_record_stats_round_trip_and_default() -> None:
    record = NodeRecord("a", "l", "u", 1.0, 2, state="degraded", messages_in=7, drops=1)
    record.messages_out, record.heartbeat_at = 9, 3.5
    assert NodeRecord.from_dict(record.to_dict()) == record
    older = {"id": "a", "listen": "l", "admin_url": "u", "started_at": "1.0"}
    parsed = NodeRecord.from_dict(older)
    assert (parsed.state, parsed.messages_in, parsed.drops, parsed.heartbeat_at) == ("up", 0, 0, 0)
    assert NodeRecord.from_dict(older | {"state": "bogus"}).state == "up"


# --- sessions -------------------------------------------------------------------------------


async def test_register_lookup_update_unregister(fleet: MemoryFleet) -> None:
    info = session(7)
    await register_session(fleet, info)
    assert await fleet.lookup_session(sid(7)) == info
    paused = SessionInfo(sid(7), "a", info.remote, 7.0, SessionState.PAUSED, bytes_in=9)
    await update_session(fleet, paused)
    assert await fleet.lookup_session(sid(7)) == paused
    await unregister_session(fleet, sid(7), "a")
    assert await fleet.lookup_session(sid(7)) is None
    assert await node_sessions(fleet, "a") == []


async def test_update_does_not_create(fleet: MemoryFleet) -> None:
    await update_session(fleet, session(1))
    assert await fleet.lookup_session(sid(1)) is None
    assert await fleet.list_sessions(node=None, cursor=None, limit=10) == ([], None)


async def test_unregister_unknown_is_harmless(fleet: MemoryFleet) -> None:
    await register_session(fleet, session(2))
    await unregister_session(fleet, sid(1), "a")
    await unregister_session(fleet, sid(3), "nobody")
    assert await node_sessions(fleet, "a") == [sid(2)]


async def test_register_twice_lists_once(fleet: MemoryFleet) -> None:
    await register_session(fleet, session(1))
    await register_session(fleet, session(1))
    page, _ = await fleet.list_sessions(node=None, cursor=None, limit=10)
    assert [s.client_uuid for s in page] == [sid(1)]


async def pages(fleet: MemoryFleet, *, node: str | None, limit: int) -> list[list[str]]:
    result: list[list[str]] = []
    cursor: str | None = None
    while True:
        page, cursor = await fleet.list_sessions(node=node, cursor=cursor, limit=limit)
        result.append([s.client_uuid for s in page])
        if cursor is None:
            return result
        assert len(result) < 100, "pagination does not end"


@pytest.mark.parametrize(
    ("count", "limit", "sizes"),
    [
        (0, 5, [0]),
        (1, 5, [1]),
        (5, 5, [5]),
        (6, 5, [5, 1]),
        (10, 5, [5, 5]),
        (11, 3, [3, 3, 3, 2]),
        (4, 1, [1, 1, 1, 1]),
    ],
)
async def test_pagination_visits_each_once_in_order(
    fleet: MemoryFleet, count: int, limit: int, sizes: list[int]
) -> None:
    for number in reversed(range(count)):  # registered out of order
        await register_session(fleet, session(number * 37 % 101))
    seen = await pages(fleet, node=None, limit=limit)
    assert [len(page) for page in seen] == sizes
    flat = [uuid for page in seen for uuid in page]
    assert flat == sorted(sid(n * 37 % 101) for n in range(count))


@pytest.mark.parametrize("limit", [1, 2, 3, 10])
async def test_pagination_by_node(fleet: MemoryFleet, limit: int) -> None:
    for number in range(12):
        await register_session(fleet, session(number, "a" if number % 3 else "b"))
    seen = await pages(fleet, node="b", limit=limit)
    assert [uuid for page in seen for uuid in page] == [sid(0), sid(3), sid(6), sid(9)]
    assert all(len(page) <= limit for page in seen)


async def test_pagination_survives_removal_of_the_cursor(fleet: MemoryFleet) -> None:
    for number in range(6):
        await register_session(fleet, session(number))
    page, cursor = await fleet.list_sessions(node=None, cursor=None, limit=2)
    assert cursor == sid(1)
    await unregister_session(fleet, sid(1), "a")
    await register_session(fleet, session(100))
    rest, _ = await fleet.list_sessions(node=None, cursor=cursor, limit=10)
    assert [s.client_uuid for s in page + rest] == [sid(n) for n in (0, 1, 2, 3, 4, 5, 100)]


async def test_unknown_node_has_no_sessions(fleet: MemoryFleet) -> None:
    await register_session(fleet, session(1))
    assert await fleet.list_sessions(node="zzz", cursor=None, limit=5) == ([], None)
    assert await node_sessions(fleet, "zzz") == []


# --- upstreams and health -------------------------------------------------------------------


async def test_upstreams(fleet: MemoryFleet) -> None:
    await fleet.put_upstream(UpstreamSpec("b", 2))
    await fleet.put_upstream(UpstreamSpec("a", 1))
    await fleet.put_upstream(UpstreamSpec("a", 1, mode=UpstreamMode.DRAINING))
    assert await fleet.list_upstreams() == [
        UpstreamSpec("a", 1, mode=UpstreamMode.DRAINING),
        UpstreamSpec("b", 2),
    ]
    assert await fleet.remove_upstream("a:1") is True
    assert await fleet.remove_upstream("a:1") is False
    assert [u.id for u in await fleet.list_upstreams()] == ["b:2"]


async def test_health_views(fleet: MemoryFleet) -> None:
    await fleet.put_upstream(UpstreamSpec("u", 1))
    await fleet.set_health("n1", "u:1", {"state": "ready"})
    await fleet.set_health("n2", "u:1", {"state": "backoff"})
    await fleet.set_health("n1", "u:1", {"state": "draining"})
    views = await fleet.health_views()
    assert views == {"u:1": {"n1": {"state": "draining"}, "n2": {"state": "backoff"}}}
    views["u:1"].clear()
    assert len((await fleet.health_views())["u:1"]) == 2
    await fleet.remove_upstream("u:1")
    assert await fleet.health_views() == {}


# --- a fleet inside one process -------------------------------------------------------------


async def test_fleets_on_one_hub_share_state() -> None:
    hub = MemoryHub()
    first, second = MemoryFleet(hub), MemoryFleet(hub)
    await first.register_node(node("a"), ttl=10)
    await register_session(first, session(1, "a"))
    assert await second.lookup_session(sid(1)) == session(1, "a")
    assert await second.node_alive("a")
    assert await first.claim_cleanup("x", "a", ttl=1)
    assert not await second.claim_cleanup("x", "b", ttl=1)
    assert repr(second) == "<MemoryFleet <MemoryHub nodes=1 sessions=1>>"


async def test_bus_is_always_connected_and_never_reconnects() -> None:
    """The rest of the bus's behaviour is the contract in ``test_bus_contract``."""
    bus = MemoryBus()
    assert bus.connected
    reconnected: list[str] = []

    async def on_reconnect() -> None:
        reconnected.append("again")

    await bus.start("a", Inbox(), on_reconnect=on_reconnect)
    assert bus.connected
    assert await bus.send("a", b"x")
    await bus.close()
    assert bus.connected
    assert reconnected == []


def test_a_memory_backend_shares_one_hub() -> None:
    hub = MemoryHub()
    backend = memory_backend(hub)
    assert isinstance(backend.state, MemoryFleet)
    assert isinstance(backend.bus, MemoryBus)
    assert backend.state.hub is backend.bus.hub is hub
    fresh = memory_backend()
    assert isinstance(fresh.state, MemoryFleet)
    assert isinstance(fresh.bus, MemoryBus)
    assert fresh.state.hub is fresh.bus.hub is not hub
