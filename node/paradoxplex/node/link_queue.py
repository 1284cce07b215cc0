"""An upstream link's bounded send queue, cut into gRPC messages.

Rules:
- At most ``limit`` items wait (``has_room``); the pool places nothing more on the link until
  taking frees room, which ``on_room`` announces when the queue was full or nearly so.
- ``next(count)`` waits for items, then gives the next message's worth from the front: at most
  ``count`` items within the batch limits (count and bytes); an item too large for any gRPC
  message is dropped on the way (``on_refused``: the link counts and logs it).
- A small batch on a busy link (more than one item, fewer than ``TOP_UP_BELOW``) waits one
  event-loop turn and tops up from what the sockets read meanwhile: a gRPC message costs
  far more than an item, so at 64 closed-loop connections this cut the node's CPU per message
  by about a quarter (bench/README.md). A lone item (one quiet socket) goes at once, and so
  does a batch already this large. If the link is cancelled during that turn the items go
  back to the front.
- Items of a write that failed go back to the front, in order (``put_back``); ``drain()``
  empties the queue for the items to be placed on other links.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from paradoxplex.shared.batches import ITEM_OVERHEAD, BatchLimits
from paradoxplex.wire import upstream_pb2 as pb

TOP_UP_BELOW = 64


@dataclass(slots=True)
class Outgoing:
    """A message for an upstream: socket data, or a lifecycle event (no payload)."""

    client_uuid: str
    payload: bytes
    event: pb.SocketEvent | None = None

    def request(self, now: str) -> pb.InputStreamRequest:
        if self.event is None:
            return pb.InputStreamRequest(
                time=now, client_uuid=self.client_uuid, payload=self.payload
            )
        return pb.InputStreamRequest(time=now, client_uuid=self.client_uuid, event=self.event)


class LinkQueue:
    __slots__ = ("_items", "_on_refused", "_on_room", "_wakeup", "limit", "limits")

    def __init__(
        self,
        *,
        limit: int,
        limits: BatchLimits,
        on_room: Callable[[], None],
        on_refused: Callable[[Outgoing, int], None],
    ) -> None:
        self.limit = limit
        self.limits = limits
        self._items: deque[Outgoing] = deque()
        self._wakeup = asyncio.Event()
        self._on_room = on_room
        self._on_refused = on_refused

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)

    def has_room(self) -> bool:
        return len(self._items) < self.limit

    def put(self, item: Outgoing) -> None:
        self._items.append(item)
        if not self._wakeup.is_set():
            self._wakeup.set()

    def put_back(self, items: list[Outgoing]) -> None:
        """A failed write's items, back at the front in their order."""
        self._items.extendleft(reversed(items))

    def drain(self) -> list[Outgoing]:
        leftovers = list(self._items)
        self._items.clear()
        return leftovers

    async def next(self, count: int) -> list[Outgoing]:
        """The next message's items (waits until there are some)."""
        items: list[Outgoing] = []
        while not items:
            while not self._items:
                self._wakeup.clear()
                await self._wakeup.wait()
            was_full = len(self._items) >= self.limit
            items = self.take(count)
            if 1 < len(items) < min(count, TOP_UP_BELOW):
                await self._top_up(items, count)
            if was_full or self.limit - len(self._items) <= len(items):
                self._on_room()
        return items

    async def _top_up(self, items: list[Outgoing], count: int) -> None:
        try:
            await asyncio.sleep(0)
        except asyncio.CancelledError:
            self.put_back(items)
            raise
        self.take(count, items)

    def take(self, count: int, items: list[Outgoing] | None = None) -> list[Outgoing]:
        """Items from the front for one gRPC message (after ``items``, when given: they count
        toward its limits); too large ones are refused on the way."""
        items = [] if items is None else items
        total = sum(len(item.payload) + ITEM_OVERHEAD for item in items)
        queue = self._items
        limits = self.limits
        while queue and len(items) < count:
            size = len(queue[0].payload) + ITEM_OVERHEAD
            if not limits.fits(size):
                self._on_refused(queue.popleft(), size)
            elif limits.admits(len(items), total, size):
                items.append(queue.popleft())
                total += size
            else:
                break
        return items

    def __repr__(self) -> str:
        return f"<LinkQueue {len(self._items)}/{self.limit}>"
