"""The ``time`` field of wire messages: RFC 3339 UTC with milliseconds."""

from __future__ import annotations

import time
from datetime import UTC, datetime

_last = [-1]
_text = [""]


def timestamp() -> str:
    """Now, as ``2026-11-29T21:46:30.123Z``; formatted at most once per millisecond."""
    millis = int(time.time() * 1000)
    if millis != _last[0]:
        moment = datetime.fromtimestamp(millis / 1000, UTC)
        _text[0] = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        _last[0] = millis
    return _text[0]
