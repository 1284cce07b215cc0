"""Long-running loops and cancellation; the node's background tasks.

Rules:
- Every background task of a node is spawned through one ``TaskSet``: a task that fails is
  logged with its traceback (``exc_info``) and forgotten; the node keeps running.
- ``cancel_all`` cancels what is left and waits at most ``grace`` seconds; a task that
  ignores its cancellation is reported with its stack, never waited for forever.
- Work fanned out at once (one Redis command per bucket or shard) goes through ``all_of``:
  when one part fails, the others are cancelled and have ended before the error goes on.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Awaitable
from typing import Any, TypeVar

log = logging.getLogger("paradoxplex.node")

T = TypeVar("T")


def checkpoint() -> None:
    """Raise ``CancelledError`` when the current task has been asked to stop.

    redis-py can swallow a cancellation that lands inside one of its socket timeouts (its
    call then returns or fails as if nothing happened); a loop that calls it again would never
    stop. Loops call this once per turn, so a lost cancel resurfaces at the next turn.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def all_of(*work: Awaitable[T]) -> list[T]:
    """Await every part at once and return their results in order, as ``asyncio.gather``;
    but when a part fails (or this is cancelled), cancel the others and wait for them to end
    before raising. ``gather`` leaves them running: after a failed unregister on a Redis
    Cluster whose master had died, the node closed its client while they still retried, and
    the client reopened connections for them that nothing closed again."""
    tasks = [asyncio.ensure_future(part) for part in work]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        raise


class TaskSet:
    """The background tasks of one node."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, work: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(work)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("task %s failed", task.get_name(), exc_info=task.exception())

    async def cancel_all(self, *, grace: float = 3.0) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=grace)
        for task in pending:
            stack = io.StringIO()
            task.print_stack(limit=12, file=stack)
            log.warning(
                "shutdown: task %r ignored cancellation for %gs\n%s",
                task.get_name(),
                grace,
                stack.getvalue(),
            )

    def __len__(self) -> int:
        return len(self._tasks)

    def __repr__(self) -> str:
        return f"<TaskSet running={len(self._tasks)}>"
