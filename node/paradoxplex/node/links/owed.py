"""Lifecycle events owed for sockets this node never held open, waiting for a link.

Rules:
- The events of sockets gone without closing here (a dead node's, this node's own previous
  incarnation's) are owed (``owe``): they wait, in order, until links can take them; the
  pool calls ``place`` when a link enters rotation or has room again.
- At most ``limit`` (``OWED_EVENTS``) wait; past it the oldest are dropped, counted
  (``lifecycle_event_no_upstream``).
- An owed event is placed like data (where the balancer says, on a link with room),
  unnumbered; its socket is gone, so sticky routing keeps no entry for it once placed.
- ``placed()`` returns once none waits (the node waits for it at start, within its
  ``ready_timeout``).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterable, Mapping

from paradoxplex.node.links.link import UpstreamLink
from paradoxplex.node.links.queue import Outgoing
from paradoxplex.node.metrics import Metrics
from paradoxplex.shared.balancing import Balancer, Place
from paradoxplex.shared.drops import DropReason
from paradoxplex.wire import upstream_pb2 as pb

#: Owed lifecycle events that wait for a link at most; past it the oldest are dropped, counted.
OWED_EVENTS = 100_000


class OwedEvents:
    """Owed lifecycle events, in order, until links take them (see the module's rules)."""

    __slots__ = ("_balancer", "_events", "_has_room", "_links", "_metrics", "_none", "limit")

    def __init__(
        self,
        *,
        balancer: Balancer,
        links: Mapping[str, UpstreamLink],
        has_room: Callable[[str], bool],
        metrics: Metrics,
        limit: int = OWED_EVENTS,
    ) -> None:
        self._balancer = balancer
        self._links = links
        self._has_room = has_room
        self._metrics = metrics
        self.limit = limit
        self._events: deque[tuple[str, pb.SocketEvent]] = deque()
        self._none = asyncio.Event()
        self._none.set()

    def __len__(self) -> int:
        return len(self._events)

    def __bool__(self) -> bool:
        return bool(self._events)

    def owe(self, events: Iterable[tuple[str, pb.SocketEvent]]) -> None:
        """``(client_uuid, event)`` pairs, placed in order as soon as links can take them;
        past ``limit`` waiting, the oldest are dropped (counted)."""
        waiting = self._events
        waiting.extend(events)
        excess = len(waiting) - self.limit
        for _ in range(excess):
            waiting.popleft()
        if excess > 0:
            self._metrics.drops.labels(DropReason.LIFECYCLE_EVENT_NO_UPSTREAM).inc(excess)
        if waiting:
            self._none.clear()
        self.place()

    def place(self) -> None:
        """Place what links take now, in order; the rest waits."""
        waiting = self._events
        while waiting:
            client_uuid, event = waiting[0]
            decision = self._balancer.pick(client_uuid, self._has_room)
            if not isinstance(decision, Place):
                return
            self._links[decision.upstream_id].enqueue(Outgoing(client_uuid, b"", event))
            self._balancer.forget(client_uuid)  # a gone socket: sticky routing keeps no entry
            waiting.popleft()
        self._none.set()

    async def placed(self) -> None:
        """Returns once no owed event waits for a link."""
        await self._none.wait()

    def __repr__(self) -> str:
        return f"<OwedEvents waiting={len(self._events)} limit={self.limit}>"
