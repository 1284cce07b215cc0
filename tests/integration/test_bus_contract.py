"""One bus contract, two implementations: every test here runs over MemoryBus and RedisBus
(on one server, on three shards, on a cluster).

What a node may count on from its bus, whatever the backend: a send reaches its node only, in
the order sent (concurrent sends too, in the order called), with nothing counted lost or
twice; a broadcast reaches every other node; a control envelope reaches every node, the
sender included; a send to a node that never listens is False; a started bus is
``connected``. Redis-only behaviour (stalls, outages, the reader, gaps) is in
``test_redis_bus`` and ``test_redis_outage``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Protocol

import pytest
import pytest_asyncio

from paradoxplex.node.fleet.memory import MemoryBus, MemoryHub
from paradoxplex.shared.fleet import FleetBus
from tests.conftest import delete_prefix
from tests.support.bus import Inbox, redis_bus, send_all, settled, started
from tests.support.eventually import eventually

#: How long a Redis send waits for a node that never listens (memory gives up at once).
SEND_DEADLINE = 0.2


class MakeBus(Protocol):
    def __call__(self) -> FleetBus: ...


def memory_buses() -> Callable[[], FleetBus]:
    hub = MemoryHub()
    return lambda: MemoryBus(hub)


#: Redis mode → the fixture giving its URL (one server, three shards, a cluster).
URLS = {"redis": "redis_url", "shards": "shards_url", "cluster": "cluster_url"}


@pytest_asyncio.fixture(params=["memory", *URLS])
async def make_bus(request: pytest.FixtureRequest, key_prefix: str) -> AsyncIterator[MakeBus]:
    """Buses of one fleet (one hub, or one Redis prefix); each is closed after the test."""
    made: list[FleetBus] = []
    url = ""
    if request.param == "memory":
        build = memory_buses()
    else:
        url = request.getfixturevalue(URLS[request.param])

        def build() -> FleetBus:
            return redis_bus(url, prefix=key_prefix, send_deadline=SEND_DEADLINE)

    def make() -> FleetBus:
        made.append(build())
        return made[-1]

    yield make
    for bus in made:
        await bus.close()
    if url:
        await delete_prefix(url, key_prefix)


async def test_a_started_bus_is_connected(make_bus: MakeBus) -> None:
    bus = make_bus()
    await started(bus, "a")
    assert bus.connected


async def test_send_reaches_only_its_node(make_bus: MakeBus) -> None:
    a, b, c = make_bus(), make_bus(), make_bus()
    inbox_a, inbox_b, inbox_c = await started(a, "a"), await started(b, "b"), await started(c, "c")
    assert await a.send("b", b"for b")
    await settled(a, inbox_a, inbox_b, inbox_c)
    assert (inbox_a.items, inbox_b.items, inbox_c.items) == ([], [b"for b"], [])


async def test_a_node_can_send_to_itself(make_bus: MakeBus) -> None:
    a = make_bus()
    inbox = await started(a, "a")
    assert await a.send("a", b"loopback")
    await eventually(inbox.got(b"loopback"))


async def test_sends_arrive_in_the_order_sent(make_bus: MakeBus) -> None:
    a, b = make_bus(), make_bus()
    await started(a, "a")
    inbox_b = await started(b, "b")
    envelopes = [n.to_bytes(2, "big") for n in range(300)]
    for envelope in envelopes[:100]:
        assert await a.send("b", envelope)
    assert await send_all(a, "b", envelopes[100:200])
    assert await send_all(a, "b", [])
    for envelope in envelopes[200:]:
        assert await a.send("b", envelope)
    await eventually(inbox_b.got(*envelopes))


async def test_broadcast_skips_its_sender_and_reaches_the_others(make_bus: MakeBus) -> None:
    a, b, c = make_bus(), make_bus(), make_bus()
    inbox_a, inbox_b, inbox_c = await started(a, "a"), await started(b, "b"), await started(c, "c")
    await a.broadcast(b"to everyone else")
    await settled(a, inbox_a, inbox_b, inbox_c)
    assert (inbox_a.items, inbox_b.items, inbox_c.items) == (
        [],
        [b"to everyone else"],
        [b"to everyone else"],
    )


async def test_broadcast_from_a_node_whose_id_prefixes_another(make_bus: MakeBus) -> None:
    a, ab = make_bus(), make_bus()
    inbox_a, inbox_ab = await started(a, "a"), await started(ab, "ab")
    await ab.broadcast(b"x")
    await a.broadcast(b"y")
    await settled(a, inbox_a, inbox_ab)
    assert (inbox_a.items, inbox_ab.items) == ([b"x"], [b"y"])


async def test_control_reaches_every_node_the_sender_included(make_bus: MakeBus) -> None:
    a, b = make_bus(), make_bus()
    inbox_a, inbox_b = await started(a, "a"), await started(b, "b")
    await a.control(b"reconcile")
    await eventually(inbox_a.got(b"reconcile"))
    await eventually(inbox_b.got(b"reconcile"))


async def test_send_to_a_node_that_never_listens_is_false(make_bus: MakeBus) -> None:
    a = make_bus()
    inbox = await started(a, "a")
    assert not await a.send("nobody", b"lost")
    assert not await send_all(a, "nobody", [b"lost 1", b"lost 2"])
    await settled(a, inbox)
    assert inbox.items == []


async def test_a_closed_node_no_longer_receives(make_bus: MakeBus) -> None:
    a, b = make_bus(), make_bus()
    await started(a, "a")
    inbox_b = await started(b, "b")
    await b.close()
    assert not await a.send("b", b"gone")
    assert inbox_b.items == []


async def test_concurrent_sends_arrive_in_the_order_called(make_bus: MakeBus) -> None:
    a, b = make_bus(), make_bus()
    await started(a, "a")
    inbox_b = await started(b, "b")
    envelopes = [n.to_bytes(2, "big") for n in range(200)]
    assert all(await asyncio.gather(*(a.send("b", envelope) for envelope in envelopes)))
    await eventually(inbox_b.got(*envelopes))
    assert (b.stats.gaps, b.stats.lost, b.stats.duplicates) == (0, 0, 0)


async def test_a_successor_reads_and_numbers_on_where_a_paused_bus_stopped(
    make_bus: MakeBus,
) -> None:
    """A hot handoff: node b's bus pauses and a new bus starts as b from its position. What
    was sent to b meanwhile reaches the successor, in order, once; what b sends goes on under
    the same numbering: nobody counts a gap or a duplicate."""
    a, b = make_bus(), make_bus()
    inbox_a, inbox_b = await started(a, "a"), await started(b, "b")
    before = [b"to b %d" % n for n in range(20)]
    assert await send_all(a, "b", before)
    assert await send_all(b, "a", [b"from b 1", b"from b 2"])
    await b.broadcast(b"from b to all")
    await eventually(inbox_b.got(*before))
    await eventually(inbox_a.got(b"from b 1", b"from b 2", b"from b to all"))
    position = await b.pause()
    during = [b"during %d" % n for n in range(20)]
    assert await send_all(a, "b", during)
    blocked = asyncio.ensure_future(b.send("a", b"from the paused bus"))
    await asyncio.sleep(0.2)
    assert not blocked.done()  # a paused bus sends nothing
    blocked.cancel()
    successor = make_bus()
    inbox_new = Inbox()
    await successor.start("b", inbox_new, position=position)
    await b.close(keep_inbox=True)
    after = [b"after %d" % n for n in range(20)]
    assert await send_all(a, "b", after)
    await eventually(inbox_new.got(*during, *after))
    assert await send_all(successor, "a", [b"from b 3"])
    await successor.broadcast(b"from b to all again")
    await eventually(
        inbox_a.got(b"from b 1", b"from b 2", b"from b to all", b"from b 3", b"from b to all again")
    )
    assert inbox_b.items == before
    for bus in (a, successor):
        assert (bus.stats.gaps, bus.stats.lost, bus.stats.duplicates) == (0, 0, 0)


async def test_a_paused_bus_resumes_where_it_stopped(make_bus: MakeBus) -> None:
    """The handoff did not happen: the same bus reads and sends on, nothing lost or twice."""
    a, b = make_bus(), make_bus()
    inbox_a, inbox_b = await started(a, "a"), await started(b, "b")
    assert await a.send("b", b"one")
    await eventually(inbox_b.got(b"one"))
    settles: list[str] = []

    async def settle() -> None:
        settles.append("settled")

    await b.pause(settle)
    assert settles == ["settled"]
    assert await a.send("b", b"two")
    sending = asyncio.ensure_future(b.send("a", b"held"))
    await asyncio.sleep(0.2)
    assert inbox_b.items == [b"one"]
    assert not sending.done()
    await b.resume()
    assert await sending
    assert await a.send("b", b"three")
    await eventually(inbox_b.got(b"one", b"two", b"three"))
    await eventually(inbox_a.got(b"held"))
    for bus in (a, b):
        assert (bus.stats.gaps, bus.stats.duplicates) == (0, 0)
