"""An upstream link's queue: batches cut within limits, small batches topped up one turn
later, and nothing lost when the link is cancelled meanwhile."""

from __future__ import annotations

import asyncio

import pytest

from paradoxplex.node.link_queue import TOP_UP_BELOW, LinkQueue, Outgoing
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
