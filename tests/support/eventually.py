"""Wait for a condition by polling it, with a deadline: tests never sleep to wait."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable

Predicate = Callable[[], bool | Awaitable[bool]]


async def eventually(
    predicate: Predicate,
    *,
    timeout: float = 5.0,  # noqa: ASYNC109 (a deadline for the polling, not for a call)
    interval: float = 0.02,
    message: str = "",
) -> float:
    """Poll ``predicate`` (sync or async) until it is true; return the seconds it took.

    Fails with an AssertionError naming ``message`` (or the predicate) after ``timeout``.
    An exception raised by the predicate counts as "not yet"; the last one is chained.
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + timeout
    last_error: Exception | None = None
    while True:
        try:
            outcome = predicate()
            if inspect.isawaitable(outcome):
                outcome = await outcome
            if outcome:
                return loop.time() - started
            last_error = None
        except Exception as exc:
            last_error = exc
        if loop.time() >= deadline:
            what = message or getattr(predicate, "__qualname__", repr(predicate))
            raise AssertionError(
                f"timed out after {timeout:g} s waiting for: {what}"
            ) from last_error
        await asyncio.sleep(interval)
