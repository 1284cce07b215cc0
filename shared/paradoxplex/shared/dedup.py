"""An upstream's memory of what it finished (delivery ids), and of the replies it still owes
the node (numbered per reply channel): the SDK's two decisions about duplicates.

Rules:
- ``DeliveryWindow``: the delivery ids ``(client_uuid, seq)`` whose handler finished, the
  last ``max_ids`` of them (65,536) and none older than ``max_age`` seconds (300) (the SDK
  hands it a stream's ids when the stream ends; an open stream keeps its own). A
  redelivery (attempt > 1) of an id in the window is not run again: the upstream
  acknowledges it and counts it. Ids older or pushed out run again (at-least-once past the
  window); first deliveries are never checked (they cannot be duplicates).
- ``ReplyLedger``: one reply channel (one node incarnation): replies are numbered when first
  sent (``number``), from 1, consecutively, and kept until the node acknowledges them
  cumulatively (``acked``); ``unacked`` gives what to send again, with the same numbers, on
  the next stream of that channel. ``trim(limit)`` forgets the oldest beyond ``limit``.
No I/O, no clock: ``now`` is a parameter.
"""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

DEFAULT_WINDOW_IDS = 65_536
DEFAULT_WINDOW_AGE = 300.0

T = TypeVar("T")


class DeliveryWindow:
    """The delivery ids an upstream finished recently (see the module's rules): a ring of the
    last ``max_ids`` and the time each finished."""

    __slots__ = ("_ids", "_ring", "max_age", "max_ids")

    def __init__(
        self, *, max_ids: int = DEFAULT_WINDOW_IDS, max_age: float = DEFAULT_WINDOW_AGE
    ) -> None:
        if max_ids < 1 or max_age <= 0:
            raise ValueError("a delivery window needs max_ids >= 1 and max_age > 0")
        self.max_ids = max_ids
        self.max_age = max_age
        self._ids: dict[tuple[str, int], float] = {}
        self._ring: deque[tuple[str, int]] = deque()

    def __len__(self) -> int:
        return len(self._ids)

    def finished_all(self, keys: list[tuple[str, int]], now: float) -> None:
        """The handlers of these delivery ids ``(client_uuid, seq)`` finished (or they were
        acknowledged unrun), oldest first."""
        ids, ring, limit = self._ids, self._ring, self.max_ids
        for key in keys:
            if len(ring) >= limit:
                oldest = ring.popleft()
                if oldest != key:
                    ids.pop(oldest, None)
            ring.append(key)
            ids[key] = now

    def seen(self, client_uuid: str, seq: int, now: float) -> bool:
        """Whether ``(client_uuid, seq)`` finished here within the window."""
        at = self._ids.get((client_uuid, seq))
        return at is not None and now - at <= self.max_age

    def __repr__(self) -> str:
        return f"<DeliveryWindow {len(self._ids)}/{self.max_ids} max_age={self.max_age:g}s>"


class ReplyLedger(Generic[T]):
    """One reply channel's replies from their number until the node takes them."""

    __slots__ = ("_batches", "count", "next")

    def __init__(self) -> None:
        self.next = 1
        self.count = 0
        self._batches: deque[tuple[int, list[T]]] = deque()

    def __len__(self) -> int:
        return self.count

    def number(self, items: list[T]) -> int:
        """Number ``items`` (consecutively) and keep them; the first one's number."""
        first = self.next
        if items:
            self.next += len(items)
            self.count += len(items)
            self._batches.append((first, items))
        return first

    def acked(self, upto: int) -> int:
        """The node took every reply up to number ``upto``; how many were released."""
        released = 0
        batches = self._batches
        while batches:
            first, items = batches[0]
            last = first + len(items) - 1
            if last <= upto:
                batches.popleft()
                released += len(items)
            elif first <= upto:
                cut = upto - first + 1
                batches[0] = (upto + 1, items[cut:])
                released += cut
                break
            else:
                break
        self.count -= released
        return released

    def trim(self, limit: int) -> int:
        """Keep at most ``limit`` replies, forgetting the oldest; how many were forgotten."""
        if self.count <= limit:
            return 0
        oldest = self._batches[0][0]
        return self.acked(oldest + (self.count - limit) - 1)

    def unacked(self) -> list[tuple[int, list[T]]]:
        """What the node has not taken: (first number, replies), oldest first."""
        return list(self._batches)

    def __repr__(self) -> str:
        return f"<ReplyLedger next={self.next} unacked={self.count}>"
