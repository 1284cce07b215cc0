"""Long-running loops and cancellation."""

from __future__ import annotations

import asyncio


def checkpoint() -> None:
    """Raise ``CancelledError`` when the current task has been asked to stop.

    redis-py can swallow a cancellation that lands inside one of its socket timeouts (its
    call then returns or fails as if nothing happened); a loop that calls it again would never
    stop. Loops call this once per turn, so a lost cancel resurfaces at the next turn.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
