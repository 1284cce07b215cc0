"""Work fanned out at once: ``all_of`` returns every result in order, and when one part fails
the others have been cancelled and have ended before the error reaches the caller."""

from __future__ import annotations

import asyncio

import pytest

from paradoxplex.node.tasks import all_of


async def value(n: int) -> int:
    await asyncio.sleep(0)
    return n


async def test_every_result_in_the_order_given() -> None:
    assert await all_of(value(3), value(1), value(2)) == [3, 1, 2]
    assert await all_of() == []


async def test_a_failed_part_ends_the_others_before_the_error_goes_on() -> None:
    started = asyncio.Event()
    ended: list[str] = []

    async def waits_forever() -> int:
        try:
            started.set()
            await asyncio.Event().wait()
        finally:
            ended.append("waiter")
        return 0

    async def fails() -> int:
        await started.wait()
        raise ConnectionError("down")

    with pytest.raises(ConnectionError, match="down"):
        await all_of(waits_forever(), fails())
    assert ended == ["waiter"]  # with asyncio.gather it would still be waiting


async def test_cancelling_the_caller_ends_every_part() -> None:
    started: list[int] = []
    running = asyncio.Event()
    ended: list[int] = []

    async def part(n: int) -> None:
        started.append(n)
        if len(started) == 2:
            running.set()
        try:
            await asyncio.Event().wait()
        finally:
            ended.append(n)

    caller = asyncio.ensure_future(all_of(part(1), part(2)))
    await running.wait()
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert sorted(ended) == [1, 2]
