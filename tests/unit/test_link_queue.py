"""An upstream link's queue: batches cut within limits, small batches topped up one turn
later, and nothing lost when the link is cancelled meanwhile."""

from __future__ import annotations

import asyncio

import pytest

from paradoxplex.node.links.queue import TOP_UP_BELOW, LinkQueue, Outgoing
from paradoxplex.shared.batches import ITEM_OVERHEAD, BatchLimits


def make_queue(limits: BatchLimits | None = None, limit: int = 1_000) -> LinkQueue:
    return LinkQueue(
        limit=limit,
        limits=limits or BatchLimits(),
        on_room=lambda: None,
        on_refused=lambda item, size: None,
    )


def items(*names: str, size: int = 8) -> list[Outgoing]:
    return [Outgoing(name, b"x" * size) for name in names]


def names(batch: list[Outgoing]) -> list[str]:
    return [item.client_uuid for item in batch]


def put_all(queue: LinkQueue, batch: list[Outgoing]) -> None:
    for item in batch:
        queue.put(item)


async def test_a_lone_item_goes_at_once() -> None:
    queue = make_queue()
    queue.put(items("a")[0])
    asyncio.get_running_loop().call_soon(queue.put, items("b")[0])
    assert names(await queue.next(100)) == ["a"]
    assert len(queue) == 0  # returned before the loop's next turn
    await asyncio.sleep(0)
    assert names(queue.drain()) == ["b"]


async def test_a_small_batch_tops_up_with_what_arrives_in_the_next_turn() -> None:
    queue = make_queue()
    for item in items("a", "b"):
        queue.put(item)
    later = items("c", "d")
    asyncio.get_running_loop().call_soon(put_all, queue, later)
    assert names(await queue.next(100)) == ["a", "b", "c", "d"]
    assert not queue


async def test_a_batch_of_top_up_size_goes_without_waiting() -> None:
    queue = make_queue()
    for item in items(*(f"s{i}" for i in range(TOP_UP_BELOW))):
        queue.put(item)
    asyncio.get_running_loop().call_soon(queue.put, items("late")[0])
    assert len(await queue.next(1_000)) == TOP_UP_BELOW
    assert len(queue) == 0  # returned before the loop's next turn
    await asyncio.sleep(0)
    assert names(queue.drain()) == ["late"]


async def test_the_top_up_keeps_the_count_and_byte_limits_of_one_message() -> None:
    limits = BatchLimits(max_items=10, max_bytes=3 * (8 + ITEM_OVERHEAD))
    queue = make_queue(limits)
    for item in items("a", "b"):
        queue.put(item)
    later = items("c", "d", "e")
    asyncio.get_running_loop().call_soon(put_all, queue, later)
    assert names(await queue.next(10)) == ["a", "b", "c"]
    assert names(queue.drain()) == ["d", "e"]


async def test_a_link_cancelled_during_the_top_up_puts_its_items_back_in_order() -> None:
    queue = make_queue()
    for item in items("a", "b", "c"):
        queue.put(item)
    taking = asyncio.ensure_future(queue.next(100))
    await asyncio.sleep(0)  # the task took a, b, c and waits one turn to top up
    assert len(queue) == 0
    queue.put(items("d")[0])
    taking.cancel()
    with pytest.raises(asyncio.CancelledError):
        await taking
    assert names(queue.drain()) == ["a", "b", "c", "d"]


async def test_one_at_a_time_for_original_proto_links() -> None:
    queue = make_queue()
    for item in items("a", "b"):
        queue.put(item)
    assert names(await queue.next(1)) == ["a"]
    assert names(await queue.next(1)) == ["b"]


async def test_lanes_keep_each_socket_on_one_lane_in_order() -> None:
    queue = make_queue()
    queue.set_lanes(4)
    sent = [Outgoing(f"s{i % 10}", b"%d" % i) for i in range(200)]
    put_all(queue, sent)
    assert len(queue) == 200
    seen: dict[str, list[bytes]] = {}
    lane_of_socket: dict[str, int] = {}
    for lane in range(4):
        while batch := queue.take(1, lane=lane):
            item = batch[0]
            seen.setdefault(item.client_uuid, []).append(item.payload)
            assert lane_of_socket.setdefault(item.client_uuid, lane) == lane
    assert not queue
    for socket, payloads in seen.items():
        assert payloads == [s.payload for s in sent if s.client_uuid == socket]
    assert len(set(lane_of_socket.values())) > 1  # the sockets are spread


async def test_set_lanes_spreads_what_is_queued_and_the_limit_counts_all_lanes() -> None:
    queue = make_queue(limit=6)
    put_all(queue, items("a", "b", "c", "d", "e"))
    queue.set_lanes(3)
    assert len(queue) == 5
    assert queue.has_room()
    queue.put(items("f")[0])
    assert not queue.has_room()
    assert sorted(names(queue.drain())) == ["a", "b", "c", "d", "e", "f"]


async def test_a_failed_write_goes_back_to_the_front_of_its_lane() -> None:
    queue = make_queue()
    queue.set_lanes(3)
    put_all(queue, items("x", "x", "x"))
    lane = queue.lane_of("x")
    taken = await queue.next(1, lane)
    queue.put_back(taken)
    assert len(queue) == 3
    assert [item.client_uuid for item in queue.take(10, lane=lane)] == ["x", "x", "x"]


async def test_a_writer_waits_on_its_own_lane() -> None:
    queue = make_queue()
    queue.set_lanes(2)
    mine = next(n for n in (f"s{i}" for i in range(100)) if queue.lane_of(n) == 1)
    other = next(n for n in (f"s{i}" for i in range(100)) if queue.lane_of(n) == 0)
    waiting = asyncio.ensure_future(queue.next(1, 1))
    queue.put(items(other)[0])
    await asyncio.sleep(0)
    assert not waiting.done()
    queue.put(items(mine)[0])
    assert names(await waiting) == [mine]
