"""The ``time`` field of wire messages: RFC 3339 UTC with milliseconds.

The caller reads the clock and passes the time in (``timestamp(time.time())``); the text for
the last millisecond seen is kept, so a busy writer formats at most once per millisecond.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache


def timestamp(now: float) -> str:
    """``now`` (seconds since the epoch) as ``2026-11-29T21:46:30.123Z``."""
    return _format_millis(int(now * 1000))


@lru_cache(maxsize=1)
def _format_millis(millis: int) -> str:
    moment = datetime.fromtimestamp(millis / 1000, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
