"""One contract, two implementations: every test here runs over MemoryFleet and RedisFleet
(on one server, on three shards, on a cluster: ``fleet_state``'s parameters).

The tests at the end are Redis-only behaviour (liveness TTLs, what is left in Redis).
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from redis.asyncio import Redis

import paradoxplex.node.fleet.redis.state as state
from paradoxplex.node.fleet.redis import RedisFleet
from paradoxplex.shared.fleet import FleetState, NodeRecord
from paradoxplex.shared.idempotency import Verdict, fingerprint
from paradoxplex.shared.sessions import SessionInfo, SessionState
from paradoxplex.shared.upstreams import UpstreamMode, UpstreamSpec
from tests.support.eventually import eventually
from tests.support.state import node_sessions, register_session, unregister_session, update_session

TTL = 30.0


def session(number: int, node: str = "node-a", **changes: object) -> SessionInfo:
    info = SessionInfo(
        client_uuid=f"00000000-0000-4000-8000-{number:012d}",
        node_id=node,
        remote=f"10.0.0.{number % 250}:{40000 + number}",
        connected_at=1_700_000_000.123456 + number,
    )
    for name, value in changes.items():
        setattr(info, name, value)
    return info


def node(node_id: str, sockets: int = 0) -> NodeRecord:
    return NodeRecord(
        node_id=node_id,
        listen="0.0.0.0:7999",
        admin_url=f"http://{node_id}:8000",
        started_at=1_700_000_000.5,
        sockets=sockets,
    )


async def all_pages(
    fleet: FleetState, *, node: str | None = None, limit: int = 10
) -> list[list[str]]:
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        items, cursor = await fleet.list_sessions(node=node, cursor=cursor, limit=limit)
        pages.append([info.client_uuid for info in items])
        if cursor is None:
            return pages
        assert len(pages) < 100, "the cursor never ended"


# -- sessions ------------------------------------------------------------------------------


async def test_register_and_lookup_a_session(fleet_state: FleetState) -> None:
    info = session(1, labels={"site": "lyon", "kind/ü": "a=b c"}, bytes_in=12, messages_out=3)
    await register_session(fleet_state, info)
    assert await fleet_state.lookup_session(info.client_uuid) == info
    assert await fleet_state.lookup_session(session(2).client_uuid) is None


async def test_update_a_session(fleet_state: FleetState) -> None:
    info = session(1, labels={"a": "1"})
    await register_session(fleet_state, info)
    changed = session(1, state=SessionState.PAUSED, labels={"b": "2"}, bytes_out=99)
    await update_session(fleet_state, changed)
    assert await fleet_state.lookup_session(info.client_uuid) == changed


async def test_update_does_not_bring_back_an_unregistered_session(
    fleet_state: FleetState,
) -> None:
    info = session(1)
    await update_session(fleet_state, info)
    assert await fleet_state.lookup_session(info.client_uuid) is None
    await register_session(fleet_state, info)
    await unregister_session(fleet_state, info.client_uuid, info.node_id)
    await update_session(fleet_state, info)
    assert await fleet_state.lookup_session(info.client_uuid) is None
    assert await node_sessions(fleet_state, info.node_id) == []


async def test_unregister_a_session(fleet_state: FleetState) -> None:
    kept, gone = session(1), session(2)
    for info in (kept, gone):
        await register_session(fleet_state, info)
    await unregister_session(fleet_state, gone.client_uuid, gone.node_id)
    assert await fleet_state.lookup_session(gone.client_uuid) is None
    assert await node_sessions(fleet_state, "node-a") == [kept.client_uuid]
    assert await all_pages(fleet_state) == [[kept.client_uuid]]


async def test_many_sessions_at_once(fleet_state: FleetState) -> None:
    """1,000 in one call: the Redis side must not open a connection per session."""
    infos = [session(n, node="node-a" if n % 2 else "node-b") for n in range(1000)]
    await fleet_state.register_sessions(infos)
    assert sum(len(page) for page in await all_pages(fleet_state, limit=1000)) == 1000
    assert len(await node_sessions(fleet_state, "node-b")) == 500
    changed = [session(n, labels={"k": "v"}) for n in range(1, 1000, 2)]
    await fleet_state.update_sessions(changed)
    found = await fleet_state.lookup_session(changed[0].client_uuid)
    assert found is not None
    assert found.labels == {"k": "v"}
    await fleet_state.unregister_sessions(
        [(info.client_uuid, info.node_id) for info in infos[:999]]
    )
    assert await all_pages(fleet_state) == [[infos[999].client_uuid]]


async def test_unregister_an_unknown_session_is_harmless(fleet_state: FleetState) -> None:
    await unregister_session(fleet_state, session(7).client_uuid, "node-x")
    assert await all_pages(fleet_state) == [[]]


async def test_registering_again_replaces(fleet_state: FleetState) -> None:
    await register_session(fleet_state, session(1, labels={"a": "1"}))
    again = session(1, labels={"b": "2"})
    await register_session(fleet_state, again)
    assert await fleet_state.lookup_session(again.client_uuid) == again
    assert await all_pages(fleet_state) == [[again.client_uuid]]


# -- listing -------------------------------------------------------------------------------


async def test_pages_of_ten_over_25_sessions(fleet_state: FleetState) -> None:
    infos = [session(n, node="node-a" if n % 2 else "node-b") for n in range(25, 0, -1)]
    for info in infos:
        await register_session(fleet_state, info)
    pages = await all_pages(fleet_state, limit=10)
    assert [len(page) for page in pages] == [10, 10, 5]
    assert [uuid for page in pages for uuid in page] == sorted(info.client_uuid for info in infos)


async def test_a_full_last_page_has_no_cursor(fleet_state: FleetState) -> None:
    for number in range(1, 21):
        await register_session(fleet_state, session(number))
    assert [len(page) for page in await all_pages(fleet_state, limit=10)] == [10, 10]


async def test_pages_return_whole_records(fleet_state: FleetState) -> None:
    infos = [session(n, labels={"n": str(n)}) for n in range(1, 4)]
    for info in infos:
        await register_session(fleet_state, info)
    items, cursor = await fleet_state.list_sessions(node=None, cursor=None, limit=10)
    assert (items, cursor) == (infos, None)


async def test_node_filter_with_cursor(fleet_state: FleetState) -> None:
    for number in range(1, 26):
        await register_session(fleet_state, session(number, node=f"node-{number % 3}"))
    expected = sorted(session(n).client_uuid for n in range(1, 26) if n % 3 == 1)
    pages = await all_pages(fleet_state, node="node-1", limit=4)
    assert [uuid for page in pages for uuid in page] == expected
    assert [len(page) for page in pages] == [4, 4, 1]
    assert await node_sessions(fleet_state, "node-1") == expected
    assert await all_pages(fleet_state, node="node-9") == [[]]


async def test_a_cursor_past_the_end(fleet_state: FleetState) -> None:
    await register_session(fleet_state, session(1))
    items, cursor = await fleet_state.list_sessions(node=None, cursor="ffffffff", limit=10)
    assert (items, cursor) == ([], None)


# -- nodes ---------------------------------------------------------------------------------


async def test_register_heartbeat_and_list_nodes(fleet_state: FleetState) -> None:
    await fleet_state.register_node(node("node-b"), ttl=TTL)
    await fleet_state.register_node(node("node-a"), ttl=TTL)
    assert await fleet_state.list_nodes() == [node("node-a"), node("node-b")]
    await fleet_state.heartbeat(node("node-a", sockets=42), ttl=TTL)
    assert await fleet_state.list_nodes() == [node("node-a", sockets=42), node("node-b")]
    assert await fleet_state.known_nodes() == ["node-a", "node-b"]
    assert await fleet_state.node_alive("node-a")
    assert not await fleet_state.node_alive("node-z")


async def test_a_node_record_keeps_its_stats(fleet_state: FleetState) -> None:
    record = node("node-a", sockets=3)
    record.state, record.messages_in, record.messages_out = "draining", 12, 34
    record.drops, record.heartbeat_at = 5, 1_700_000_001.25
    await fleet_state.heartbeat(record, ttl=TTL)
    assert await fleet_state.list_nodes() == [record]


async def test_unregister_a_node_removes_its_sessions(fleet_state: FleetState) -> None:
    for node_id in ("node-a", "node-b"):
        await fleet_state.register_node(node(node_id), ttl=TTL)
    mine = [session(n, node="node-a") for n in range(1, 6)]
    theirs = [session(n, node="node-b") for n in range(6, 9)]
    for info in mine + theirs:
        await register_session(fleet_state, info)

    await fleet_state.unregister_node("node-a")

    assert await fleet_state.list_nodes() == [node("node-b")]
    assert await fleet_state.known_nodes() == ["node-b"]
    assert not await fleet_state.node_alive("node-a")
    assert await node_sessions(fleet_state, "node-a") == []
    assert all([await fleet_state.lookup_session(info.client_uuid) is None for info in mine])
    assert await all_pages(fleet_state) == [[info.client_uuid for info in theirs]]


async def test_unregister_an_unknown_node_is_harmless(fleet_state: FleetState) -> None:
    await fleet_state.unregister_node("node-x")
    assert await fleet_state.known_nodes() == []


async def test_claim_cleanup_once(fleet_state: FleetState) -> None:
    assert await fleet_state.claim_cleanup("node-dead", "node-a", ttl=TTL)
    assert not await fleet_state.claim_cleanup("node-dead", "node-b", ttl=TTL)
    assert not await fleet_state.claim_cleanup("node-dead", "node-a", ttl=TTL)
    assert await fleet_state.claim_cleanup("node-other", "node-b", ttl=TTL)


async def test_ping(fleet_state: FleetState) -> None:
    assert await fleet_state.ping()


# -- incarnations ---------------------------------------------------------------------------


def incarnation(node_id: str, name: str, sockets: int = 0) -> NodeRecord:
    record = node(node_id, sockets)
    record.incarnation = name
    return record


def of(name: str, numbers: range, node_id: str = "node-a") -> list[SessionInfo]:
    return [session(n, node=node_id, incarnation=name) for n in numbers]


def uuids(infos: list[SessionInfo]) -> list[str]:
    return [info.client_uuid for info in infos]


async def test_a_node_id_has_one_live_incarnation(fleet_state: FleetState) -> None:
    first, second = incarnation("node-a", "i1"), incarnation("node-a", "i2", sockets=4)
    assert await fleet_state.register_node(first, ttl=TTL) is None
    assert await fleet_state.heartbeat(first, ttl=TTL) is None
    assert await fleet_state.register_node(second, ttl=TTL) == "i1"  # not without replacing
    assert await fleet_state.heartbeat(second, ttl=TTL) == "i1"
    assert await fleet_state.register_node(second, ttl=TTL, replacing="i9") == "i1"
    assert await fleet_state.list_nodes() == [first]

    assert await fleet_state.register_node(second, ttl=TTL, replacing="i1") is None
    assert await fleet_state.list_nodes() == [second]
    assert await fleet_state.node_record("node-a") == second
    assert await fleet_state.heartbeat(first, ttl=TTL) == "i2"  # the replaced one learns it
    assert await fleet_state.heartbeat(second, ttl=TTL) is None
    assert await fleet_state.node_record("node-z") is None


async def test_a_replaced_incarnations_sessions_vanish_at_once(fleet_state: FleetState) -> None:
    await fleet_state.register_node(incarnation("node-a", "i1"), ttl=TTL)
    await fleet_state.register_node(incarnation("node-b", "b1"), ttl=TTL)
    old, theirs = of("i1", range(1, 4)), of("b1", range(10, 12), "node-b")
    await fleet_state.register_sessions(old + theirs)
    assert await node_sessions(fleet_state, "node-a") == uuids(old)

    await fleet_state.register_node(incarnation("node-a", "i2"), ttl=TTL, replacing="i1")
    new = of("i2", range(4, 6))
    await fleet_state.register_sessions(new)  # before the old records are removed

    assert [await fleet_state.lookup_session(s) for s in uuids(old)] == [None] * 3
    assert await fleet_state.lookup_session(new[0].client_uuid) == new[0]
    assert await fleet_state.lookup_session(theirs[0].client_uuid) == theirs[0]
    assert await all_pages(fleet_state) == [uuids(new + theirs)]
    assert await node_sessions(fleet_state, "node-a") == uuids(new)

    assert await fleet_state.remove_stale_sessions("node-a") == uuids(old)
    assert await fleet_state.remove_stale_sessions("node-a") == []
    assert await fleet_state.remove_stale_sessions("node-b") == []
    assert await all_pages(fleet_state) == [uuids(new + theirs)]
    await fleet_state.update_sessions([session(1, incarnation="i1", bytes_in=5)])
    assert await fleet_state.lookup_session(old[0].client_uuid) is None  # not brought back


async def test_a_handoff_claims_the_id_with_its_predecessor_and_hides_nothing(
    fleet_state: FleetState,
) -> None:
    """A hot handoff: the new incarnation claims the id in place of the old one and names it
    as its predecessor: both incarnations' records count until it drops the predecessor."""
    await fleet_state.register_node(incarnation("node-a", "i1"), ttl=TTL)
    old = of("i1", range(1, 4))
    await fleet_state.register_sessions(old)
    successor = incarnation("node-a", "i2")
    successor.predecessor = "i1"
    assert await fleet_state.register_node(successor, ttl=TTL, replacing="i1") is None
    assert await fleet_state.heartbeat(incarnation("node-a", "i1"), ttl=TTL) == "i2"
    assert await fleet_state.heartbeat(successor, ttl=TTL) is None
    assert [await fleet_state.lookup_session(s) for s in uuids(old)] == old
    rewritten = of("i2", range(1, 3))  # two written again as the new one's, one not yet
    await fleet_state.register_sessions(rewritten)
    assert await all_pages(fleet_state) == [uuids(old)]
    assert await fleet_state.remove_stale_sessions("node-a") == []

    successor.predecessor = ""  # every socket written again: the predecessor goes
    assert await fleet_state.heartbeat(successor, ttl=TTL) is None
    assert await all_pages(fleet_state) == [uuids(rewritten)]
    assert await fleet_state.remove_stale_sessions("node-a") == uuids(old[2:])
    assert [n.node_id for n in await fleet_state.list_nodes()] == ["node-a"]


async def test_pages_go_on_past_invisible_records(fleet_state: FleetState) -> None:
    """Five live sessions among 40 of a replaced incarnation: every page size lists the five,
    each once and in order, and the node filter too."""
    await fleet_state.register_node(incarnation("node-a", "i1"), ttl=TTL)
    ghosts = of("i1", range(0, 45))
    await fleet_state.register_sessions(ghosts)
    await fleet_state.register_node(incarnation("node-a", "i2"), ttl=TTL, replacing="i1")
    live = of("i2", range(3, 45, 9))
    await fleet_state.register_sessions(live)  # the same uuids, now the live incarnation's
    for limit in (1, 2, 5, 100):
        listed = [s for page in await all_pages(fleet_state, limit=limit) for s in page]
        assert listed == uuids(live), limit
        by_node = await all_pages(fleet_state, node="node-a", limit=limit)
        assert [s for page in by_node for s in page] == uuids(live), limit


async def test_a_replaced_incarnation_leaving_keeps_its_successor(
    fleet_state: FleetState,
) -> None:
    await fleet_state.register_node(incarnation("node-a", "i1"), ttl=TTL)
    old = of("i1", range(1, 4))
    await fleet_state.register_sessions(old)
    await fleet_state.register_node(incarnation("node-a", "i2"), ttl=TTL, replacing="i1")
    new = of("i2", range(4, 6))
    await fleet_state.register_sessions(new)

    assert await fleet_state.unregister_node("node-a", incarnation="i1") == uuids(old)

    assert await fleet_state.list_nodes() == [incarnation("node-a", "i2")]
    assert await fleet_state.node_alive("node-a")
    assert await all_pages(fleet_state) == [uuids(new)]
    assert await fleet_state.unregister_node("node-a", incarnation="i2") == uuids(new)
    assert await fleet_state.list_nodes() == []
    assert await fleet_state.known_nodes() == []
    assert await all_pages(fleet_state) == [[]]


async def test_a_dead_nodes_last_incarnation_is_removed_not_its_successor(
    fleet_state: FleetState,
) -> None:
    """The reaper's call: the dead incarnation's sessions go; a successor that claimed the id
    meanwhile keeps its claim, its record and its sessions."""
    await fleet_state.register_node(incarnation("node-a", "i1"), ttl=TTL)
    await fleet_state.register_sessions(of("i1", range(1, 3)))
    await fleet_state.register_node(incarnation("node-a", "i2"), ttl=TTL, replacing="i1")
    new = of("i2", range(3, 5))
    await fleet_state.register_sessions(new)
    assert await fleet_state.unregister_node("node-a", incarnation="i1") == uuids(
        of("i1", range(1, 3))
    )
    assert await fleet_state.node_record("node-a") == incarnation("node-a", "i2")
    assert await all_pages(fleet_state) == [uuids(new)]


# -- upstreams and health ------------------------------------------------------------------


async def test_put_list_and_remove_upstreams(fleet_state: FleetState) -> None:
    first = UpstreamSpec("10.0.0.2", 45888, ready_timeout=5.0, alive_timeout=30.0)
    second = UpstreamSpec("10.0.0.1", 45888)
    await fleet_state.put_upstream(first)
    await fleet_state.put_upstream(second)
    assert await fleet_state.list_upstreams() == [second, first]

    draining = UpstreamSpec("10.0.0.2", 45888, 5.0, 30.0, UpstreamMode.DRAINING)
    await fleet_state.put_upstream(draining)
    assert await fleet_state.list_upstreams() == [second, draining]

    assert await fleet_state.remove_upstream(second.id)
    assert not await fleet_state.remove_upstream(second.id)
    assert await fleet_state.list_upstreams() == [draining]


async def test_health_views_per_node(fleet_state: FleetState) -> None:
    up1, up2 = "10.0.0.1:45888", "10.0.0.2:45888"
    await fleet_state.put_upstream(UpstreamSpec("10.0.0.1", 45888))
    await fleet_state.set_health("node-a", up1, {"ready": True, "live": True})
    await fleet_state.set_health("node-b", up1, {"ready": False, "live": True, "error": "x"})
    await fleet_state.set_health("node-a", up2, {"ready": True, "latency": 0.25})
    await fleet_state.set_health("node-a", up1, {"ready": False, "live": False})
    assert await fleet_state.health_views() == {
        up1: {
            "node-a": {"ready": False, "live": False},
            "node-b": {"ready": False, "live": True, "error": "x"},
        },
        up2: {"node-a": {"ready": True, "latency": 0.25}},
    }
    assert await fleet_state.remove_upstream(up1)
    assert await fleet_state.health_views() == {up2: {"node-a": {"ready": True, "latency": 0.25}}}


async def test_no_health_views(fleet_state: FleetState) -> None:
    assert await fleet_state.health_views() == {}
    assert await fleet_state.list_upstreams() == []


# -- idempotency keys of fleet-wide actions ------------------------------------------------

ASKED = fingerprint("broadcast", "all", None, b"hi")
OTHER = fingerprint("broadcast", "all", None, b"ho")


async def test_an_action_key_is_claimed_once_then_replayed(fleet_state: FleetState) -> None:
    first = await fleet_state.claim_action("k-1", ASKED)
    assert (first.verdict, first.evicted) == (Verdict.FRESH, 0)
    assert (await fleet_state.claim_action("k-1", ASKED)).verdict is Verdict.IN_PROGRESS
    await fleet_state.settle_action("k-1", ASKED, b'{"delivered_local": 3}')
    replay = await fleet_state.claim_action("k-1", ASKED)
    assert (replay.verdict, replay.answer) == (Verdict.REPLAY, b'{"delivered_local": 3}')
    assert (await fleet_state.claim_action("k-1", OTHER)).verdict is Verdict.MISMATCH
    assert (await fleet_state.claim_action("k-2", ASKED)).verdict is Verdict.FRESH


async def test_a_released_action_key_may_act_again(fleet_state: FleetState) -> None:
    assert (await fleet_state.claim_action("k-1", ASKED)).verdict is Verdict.FRESH
    await fleet_state.release_action("k-1", OTHER)  # not its claim: kept
    assert (await fleet_state.claim_action("k-1", ASKED)).verdict is Verdict.IN_PROGRESS
    await fleet_state.release_action("k-1", ASKED)
    assert (await fleet_state.claim_action("k-1", ASKED)).verdict is Verdict.FRESH
    await fleet_state.settle_action("k-1", ASKED, b"done")
    await fleet_state.release_action("k-1", ASKED)  # answered: a release changes nothing
    assert (await fleet_state.claim_action("k-1", ASKED)).verdict is Verdict.REPLAY


async def test_concurrent_claims_of_one_key_let_one_act(fleet_state: FleetState) -> None:
    claims = await asyncio.gather(*(fleet_state.claim_action("k-1", ASKED) for _ in range(20)))
    verdicts = Counter(claim.verdict for claim in claims)
    assert verdicts == {Verdict.FRESH: 1, Verdict.IN_PROGRESS: 19}


# -- Redis only ----------------------------------------------------------------------------


async def test_action_keys_expire_and_are_bounded_in_number(
    redis_fleet: RedisFleet, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(state, "MAX_KEYS", 3)
    monkeypatch.setattr(state, "WINDOW", 0.3)
    evicted = 0
    for number in range(5):
        claim = await redis_fleet.claim_action(f"k-{number}", ASKED)
        assert claim.verdict is Verdict.FRESH
        evicted += claim.evicted
        await redis_fleet.settle_action(f"k-{number}", ASKED, b"done")
    assert evicted == 2  # k-0 and k-1 went before their window ended, and were counted
    assert (await redis_fleet.claim_action("k-0", ASKED)).verdict is Verdict.FRESH
    assert (await redis_fleet.claim_action("k-4", ASKED)).verdict is Verdict.REPLAY
    redis = Redis.from_url(redis_url)
    try:
        assert await redis.zcard(redis_fleet.keys.actions) == 3
        remaining = await redis.pttl(redis_fleet.keys.action("k-4"))
        assert 0 < remaining <= 300

        async def expired() -> bool:
            return not await redis.exists(redis_fleet.keys.action("k-4"))

        await eventually(expired, timeout=3.0, message="k-4's record to expire")
    finally:
        await redis.aclose()


def test_redis_fleet_is_shared(redis_fleet: RedisFleet) -> None:
    assert redis_fleet.shared
    assert repr(redis_fleet).startswith("<RedisFleet prefix='pxtest:")


async def test_liveness_expires_without_heartbeat(redis_fleet: RedisFleet) -> None:
    await redis_fleet.register_node(node("node-a"), ttl=1.0)
    await redis_fleet.register_node(node("node-b"), ttl=TTL)
    assert await redis_fleet.node_alive("node-a")

    async def expired() -> bool:
        return not await redis_fleet.node_alive("node-a")

    await eventually(expired, timeout=3.0, message="node-a's liveness key to expire")
    assert await redis_fleet.list_nodes() == [node("node-b")]
    assert await redis_fleet.known_nodes() == ["node-a", "node-b"]


async def test_heartbeat_refreshes_the_liveness_ttl(
    redis_fleet: RedisFleet, redis_url: str
) -> None:
    await redis_fleet.register_node(node("node-a"), ttl=0.3)
    await redis_fleet.heartbeat(node("node-a"), ttl=TTL)
    redis = Redis.from_url(redis_url)
    try:
        remaining = await redis.pttl(redis_fleet.keys.node_alive("node-a"))
    finally:
        await redis.aclose()
    assert remaining > 1000


async def test_unregister_node_leaves_nothing_behind(
    redis_fleet: RedisFleet, redis_url: str
) -> None:
    await redis_fleet.register_node(node("node-a"), ttl=TTL)
    for number in range(1, 1201):  # more than one deletion chunk
        await register_session(redis_fleet, session(number))
    await redis_fleet.set_health("node-a", "10.0.0.1:45888", {"ready": True})
    await redis_fleet.set_health("node-b", "10.0.0.1:45888", {"ready": True})

    await redis_fleet.unregister_node("node-a")

    assert await redis_fleet.health_views() == {"10.0.0.1:45888": {"node-b": {"ready": True}}}
    redis = Redis.from_url(redis_url)
    try:
        left = {key.decode() async for key in redis.scan_iter(match=f"{redis_fleet.keys.prefix}:*")}
    finally:
        await redis.aclose()
    keys = redis_fleet.keys
    assert left == {keys.health("10.0.0.1:45888"), keys.health_upstreams}


async def test_claim_cleanup_expires(redis_fleet: RedisFleet) -> None:
    assert await redis_fleet.claim_cleanup("node-dead", "node-a", ttl=0.2)

    async def claimable() -> bool:
        return await redis_fleet.claim_cleanup("node-dead", "node-b", ttl=TTL)

    await eventually(claimable, timeout=2.0, message="the cleanup lock to expire")


@pytest.mark.parametrize("limit", [1, 7, 100])
async def test_any_page_size_lists_everything_once(fleet_state: FleetState, limit: int) -> None:
    infos = [session(n) for n in range(1, 16)]
    for info in infos:
        await register_session(fleet_state, info)
    pages = await all_pages(fleet_state, limit=limit)
    assert [uuid for page in pages for uuid in page] == [info.client_uuid for info in infos]


async def test_an_expired_claim_is_free_and_leaves_its_sessions_to_the_reaper(
    redis_fleet: RedisFleet,
) -> None:
    await redis_fleet.register_node(incarnation("node-a", "i1"), ttl=0.3)
    old = of("i1", range(1, 3))
    await redis_fleet.register_sessions(old)

    async def expired() -> bool:
        return not await redis_fleet.node_alive("node-a")

    await eventually(expired, timeout=3.0, message="node-a's claim to expire")
    assert await all_pages(redis_fleet) == [uuids(old)]  # dead, not cleaned up yet
    assert await redis_fleet.register_node(incarnation("node-a", "i2"), ttl=TTL) is None
    assert await all_pages(redis_fleet) == [[]]
    assert await redis_fleet.remove_stale_sessions("node-a") == uuids(old)
