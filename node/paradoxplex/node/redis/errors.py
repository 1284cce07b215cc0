"""Redis errors become ``FleetUnavailable`` here, once, and nowhere else.

Rules:
- ``REDIS_DOWN`` is what "Redis is not answering" looks like: any ``RedisError`` and any
  ``OSError`` (the builtin ``TimeoutError`` is one).
- ``edge`` wraps a coroutine method: those errors leave it as ``FleetUnavailable(reason)``.
- A cancellation is never turned into an error: redis-py can surface a cancel that lands in
  its own socket timeout as a ``TimeoutError``; when the task is being cancelled, that becomes
  ``CancelledError`` again (otherwise callers' retry loops swallow the cancel and spin).
- A reason is the exception's type and at most 200 characters of its text.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from redis.exceptions import RedisError

from paradoxplex.shared.errors import FleetUnavailable

__all__ = ["REDIS_DOWN", "cancel_requested", "edge", "reason", "unavailable"]

P = ParamSpec("P")
R = TypeVar("R")

#: What "Redis is not answering" looks like (builtin TimeoutError is an OSError).
REDIS_DOWN: tuple[type[Exception], ...] = (RedisError, OSError)


def reason(exc: BaseException) -> str:
    """A short, one-line account of a Redis failure."""
    text = str(exc) or "no detail"
    return f"{type(exc).__name__}: {text[:200]}"


def cancel_requested() -> bool:
    """True when the current task is being cancelled."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def unavailable(exc: BaseException) -> BaseException:
    """What to raise instead of ``exc`` (one of ``REDIS_DOWN``): the cancel, or the fleet error."""
    if cancel_requested():
        return asyncio.CancelledError()
    return FleetUnavailable(reason(exc))


def edge(method: Callable[P, Awaitable[R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    """Translate Redis and socket errors into ``FleetUnavailable``, once."""

    @functools.wraps(method)
    async def translated(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await method(*args, **kwargs)
        except REDIS_DOWN as exc:
            raise unavailable(exc) from exc

    return translated
