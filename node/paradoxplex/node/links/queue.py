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
- ``poke()`` wakes the writer of lane 0 with nothing to take (``next`` returns no items): it
  has something else to send (an acknowledgement, a drain request).
- Lanes: a link with several parallel streams (the original proto's, one message per gRPC
  message) gives each stream a lane, and every item of one socket goes to the same lane
  (by its uuid), so a socket's messages cannot overtake each other on two streams and reach
  the upstream out of order. ``set_lanes`` spreads what is queued by the same rule; the
  limit counts the items of all lanes.
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
    """A message for an upstream: socket data, or a lifecycle event (no payload); its
    delivery id is ``(client_uuid, seq)`` (``seq`` 0: unnumbered), ``attempt`` the delivery
    it goes out as (1: the first)."""

    client_uuid: str
    payload: bytes
    event: pb.SocketEvent | None = None
    seq: int = 0
    attempt: int = 1

    def request(self, now: str) -> pb.InputStreamRequest:
        if self.event is None:
            return pb.InputStreamRequest(
                time=now, client_uuid=self.client_uuid, payload=self.payload
            )
        return pb.InputStreamRequest(time=now, client_uuid=self.client_uuid, event=self.event)


class LinkQueue:
    __slots__ = (
        "_count",
        "_lanes",
        "_on_refused",
        "_on_room",
        "_poked",
        "_wakeups",
        "limit",
        "limits",
    )

    def __init__(
        self,
        *,
        limit: int,
        limits: BatchLimits,
        on_room: Callable[[], None],
        on_refused: Callable[[Outgoing, int], None],
        lanes: int = 1,
    ) -> None:
        self.limit = limit
        self.limits = limits
        self._on_room = on_room
        self._on_refused = on_refused
        self._lanes: list[deque[Outgoing]] = [deque()]
        self._wakeups = [asyncio.Event()]
        self._count = 0
        self._poked = False
        self.set_lanes(lanes)

    def __len__(self) -> int:
        return self._count

    def __bool__(self) -> bool:
        return self._count > 0

    @property
    def lanes(self) -> int:
        return len(self._lanes)

    def set_lanes(self, count: int) -> None:
        """``count`` lanes (one per stream); what is queued is spread over them by socket."""
        if count < 1:
            raise ValueError("a link queue needs at least one lane")
        queued = self.drain()
        self._lanes = [deque() for _ in range(count)]
        self._wakeups = [asyncio.Event() for _ in range(count)]
        for item in queued:
            self.put(item)

    def has_room(self) -> bool:
        return self._count < self.limit

    def lane_of(self, client_uuid: str) -> int:
        lanes = len(self._lanes)
        return 0 if lanes == 1 else hash(client_uuid) % lanes

    def put(self, item: Outgoing) -> None:
        lane = self.lane_of(item.client_uuid)
        self._lanes[lane].append(item)
        self._count += 1
        wakeup = self._wakeups[lane]
        if not wakeup.is_set():
            wakeup.set()

    def put_back(self, items: list[Outgoing]) -> None:
        """A failed write's items (all from one lane), back at its front in their order."""
        if items:
            self._lanes[self.lane_of(items[0].client_uuid)].extendleft(reversed(items))
            self._count += len(items)

    def poke(self) -> None:
        """Wake lane 0's writer even with nothing queued (see the rules)."""
        self._poked = True
        self._wakeups[0].set()

    def drain(self) -> list[Outgoing]:
        leftovers = [item for lane in self._lanes for item in lane]
        for lane in self._lanes:
            lane.clear()
        self._count = 0
        return leftovers

    async def next(self, count: int, lane: int = 0) -> list[Outgoing]:
        """The next message's items from ``lane`` (waits until there are some, or a poke:
        then none)."""
        items: list[Outgoing] = []
        while not items:
            queue = self._lanes[lane]
            while not queue:
                if self._poked and lane == 0:
                    self._poked = False
                    return items
                wakeup = self._wakeups[lane]
                wakeup.clear()
                await wakeup.wait()
                queue = self._lanes[lane]
            was_full = self._count >= self.limit
            items = self.take(count, lane=lane)
            if 1 < len(items) < min(count, TOP_UP_BELOW):
                await self._top_up(items, count, lane)
            if was_full or self.limit - self._count <= len(items):
                self._on_room()
        return items

    async def _top_up(self, items: list[Outgoing], count: int, lane: int) -> None:
        try:
            await asyncio.sleep(0)
        except asyncio.CancelledError:
            self.put_back(items)
            raise
        self.take(count, items, lane=lane)

    def take(
        self, count: int, items: list[Outgoing] | None = None, *, lane: int = 0
    ) -> list[Outgoing]:
        """Items from the front of ``lane`` for one gRPC message (after ``items``, when given:
        they count toward its limits); too large ones are refused on the way."""
        items = [] if items is None else items
        total = sum(len(item.payload) + ITEM_OVERHEAD for item in items)
        queue = self._lanes[lane]
        limits = self.limits
        taken = len(items)
        while queue and len(items) < count:
            size = len(queue[0].payload) + ITEM_OVERHEAD
            if not limits.fits(size):
                self._count -= 1
                self._on_refused(queue.popleft(), size)
            elif limits.admits(len(items), total, size):
                items.append(queue.popleft())
                total += size
            else:
                break
        self._count -= len(items) - taken
        return items

    def __repr__(self) -> str:
        return f"<LinkQueue {self._count}/{self.limit} lanes={len(self._lanes)}>"
