"""RedisBus on a real Redis, beyond the bus contract (``test_bus_contract``): binary
payloads, sends to absent, dead and late nodes, the subscriber's resilience, its state."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from typing import Protocol

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from paradoxplex.node.fleet.redis import AliveCheck, RedisBus
from tests.support.bus import Inbox, redis_bus, send_all, started
from tests.support.eventually import eventually

PAYLOADS = [
    b"",
    bytes(range(256)),
    b"\x00\x01\x02\r\n\xff",
    b"\x01a" + b"tricky: starts like a broadcast frame",
    os.urandom(1 << 20),
]


class MakeBus(Protocol):
    def __call__(
        self, *, send_deadline: float = ..., is_alive: AliveCheck | None = ...
    ) -> RedisBus: ...


@pytest_asyncio.fixture
async def make_bus(redis_url: str, key_prefix: str) -> AsyncIterator[MakeBus]:
    made: list[RedisBus] = []

    def make(*, send_deadline: float = 5.0, is_alive: AliveCheck | None = None) -> RedisBus:
        bus = redis_bus(
            redis_url, prefix=key_prefix, send_deadline=send_deadline, is_alive=is_alive
        )
        made.append(bus)
        return bus

    yield make
    for bus in made:
        await bus.close()


@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda p: f"{len(p)}B")
async def test_binary_payloads_arrive_unchanged(make_bus: MakeBus, payload: bytes) -> None:
    a, b = make_bus(), make_bus()
    await started(a, "a")
    inbox_b = await started(b, "b")
    assert await a.send("b", payload)
    await a.broadcast(payload)
    await a.control(payload)
    assert await send_all(a, "b", [payload, payload])
    await eventually(inbox_b.got(payload, payload, payload, payload, payload))


async def test_send_to_a_node_that_never_listens(
    make_bus: MakeBus, caplog: pytest.LogCaptureFixture
) -> None:
    a = make_bus(send_deadline=0.5)
    await started(a, "a")
    loop = asyncio.get_running_loop()
    began = loop.time()
    with caplog.at_level(logging.WARNING, logger="paradoxplex.node.fleet"):
        assert not await a.send("nobody", b"lost")
    assert 0.5 <= loop.time() - began < 1.5
    assert a.undelivered == 1
    assert [r.getMessage() for r in caplog.records if r.name == "paradoxplex.node.fleet"] == [
        "bus a: 1 envelope(s) for node nobody not delivered: nobody listened within 0.5 s"
    ]


async def test_send_to_a_dead_node_gives_up_at_once(make_bus: MakeBus) -> None:
    asked: list[str] = []

    async def is_alive(node_id: str) -> bool:
        asked.append(node_id)
        return False

    a = make_bus(send_deadline=5.0, is_alive=is_alive)
    await started(a, "a")
    loop = asyncio.get_running_loop()
    began = loop.time()
    assert not await a.send("dead", b"lost")
    assert not await a.send("dead", b"lost too")  # asked again: a dead node stays dead
    assert loop.time() - began < 1.0
    assert asked == ["dead", "dead"]
    assert a.undelivered == 2


async def test_send_to_a_node_that_subscribes_late(make_bus: MakeBus) -> None:
    a, late = make_bus(), make_bus()
    await started(a, "a")
    sending = asyncio.create_task(a.send("late", b"worth the wait"))
    await asyncio.sleep(0.3)  # the scenario: the owner subscribes 0.3 s after the send began
    assert not sending.done()
    inbox = await started(late, "late")
    assert await asyncio.wait_for(sending, timeout=5)
    await eventually(inbox.got(b"worth the wait"))
    assert a.undelivered == 0


async def test_a_sender_keeps_its_order_while_the_owner_is_late(make_bus: MakeBus) -> None:
    """Sends awaited in sequence (and batches) arrive in that sequence across a stall."""
    a, late = make_bus(), make_bus()
    await started(a, "a")
    batch = [n.to_bytes(2, "big") for n in range(50)]

    async def sender() -> list[bool]:
        results = [await send_all(a, "late", batch[:10])]
        for envelope in batch[10:40]:
            results.append(await a.send("late", envelope))
        results.append(await send_all(a, "late", batch[40:]))
        return results

    sending = asyncio.create_task(sender())
    await asyncio.sleep(0.3)  # the scenario: the owner subscribes while envelopes wait
    inbox = await started(late, "late")
    assert await asyncio.wait_for(sending, timeout=5) == [True] * 32
    await eventually(inbox.got(*batch))


async def test_concurrent_sends_to_an_absent_node_give_up_together(make_bus: MakeBus) -> None:
    """One retry loop per absent node: the others wait behind it, then fail fast."""
    a = make_bus(send_deadline=0.5)
    await started(a, "a")
    loop = asyncio.get_running_loop()
    began = loop.time()
    results = await asyncio.gather(*(a.send("nobody", bytes([n])) for n in range(100)))
    assert results == [False] * 100
    assert loop.time() - began < 1.5
    assert a.undelivered == 100
    assert "stalled=0" in repr(a)


async def test_a_failing_handler_does_not_stop_the_subscriber(make_bus: MakeBus) -> None:
    a = make_bus()
    seen: list[bytes] = []

    async def handler(envelope: bytes) -> None:
        seen.append(envelope)
        if envelope == b"bad":
            raise ValueError("handler bug")

    await a.start("a", handler)
    await a.send("a", b"bad")
    await a.send("a", b"good")
    await eventually(lambda: seen == [b"bad", b"good"])
    assert a.handler_errors == 1


async def test_a_slow_handler_is_not_a_dead_redis(redis_url: str, key_prefix: str) -> None:
    bus = redis_bus(redis_url, prefix=key_prefix, ping_interval=0.05)
    seen: list[bytes] = []
    release = asyncio.Event()

    async def handler(envelope: bytes) -> None:
        if envelope == b"slow":
            await release.wait()
        seen.append(envelope)

    await bus.start("a", handler)
    try:
        await bus.send("a", b"slow")
        await bus.send("a", b"next")
        await asyncio.sleep(0.3)  # the scenario: six watchdog intervals inside the handler
        release.set()
        await eventually(lambda: seen == [b"slow", b"next"])
        assert bus.connected
        assert bus.reconnects == 0
    finally:
        await bus.close()


async def test_start_twice_is_an_error(make_bus: MakeBus) -> None:
    a = make_bus()
    await started(a, "a")
    with pytest.raises(RuntimeError):
        await started(a, "a")


async def test_state_in_repr(make_bus: MakeBus) -> None:
    a = make_bus()
    assert "connected=False" in repr(a)
    await started(a, "a")
    assert repr(a) == "<RedisBus node='a' connected=True reconnects=0 undelivered=0 stalled=0>"
    await a.close()
    assert "connected=False" in repr(a)


async def test_entries_lost_in_redis_are_counted_as_gaps(redis_url: str, key_prefix: str) -> None:
    """Entries that vanish unread (trimmed here; an empty restart alike) are never silent: a
    later envelope reveals a loss in the middle, a tail marker a loss at the end of a burst."""
    a = redis_bus(redis_url, prefix=key_prefix, tail_interval=0.1)
    b = redis_bus(redis_url, prefix=key_prefix)
    redis = Redis.from_url(redis_url)
    seen: list[bytes] = []
    gate = asyncio.Event()

    async def handler(envelope: bytes) -> None:
        seen.append(envelope)
        if envelope.startswith(b"hold"):
            await gate.wait()
            gate.clear()

    await a.start("a", Inbox())
    await b.start("b", handler)
    try:
        for burst, tail in ((b"hold 1", b"after"), (b"hold 2", None)):
            assert await a.send("b", burst)
            await eventually(lambda burst=burst: seen[-1:] == [burst])  # type: ignore[misc]
            assert await send_all(a, "b", [b"x", b"y", b"z"])
            await redis.xtrim(a.keys.inbox("b"), maxlen=0)  # the loss: unread entries vanish
            gate.set()
            if tail is not None:
                assert await a.send("b", tail, count=2)
        await eventually(lambda: b.stats.gaps == 2, message="both gaps counted")
        assert seen == [b"hold 1", b"after", b"hold 2"]
        assert (b.stats.gaps, b.stats.lost, b.stats.duplicates) == (2, 6, 0)
    finally:
        await redis.aclose()
        await a.close()
        await b.close()
