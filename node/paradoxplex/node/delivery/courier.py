"""Replies for sockets on other nodes: queued per owner node, sent in batches.

Rules:
- Each owner node has its own queue of at most ``limit`` replies; a worker packs everything
  queued into one envelope and publishes it, with no timer (an idle queue adds no delay).
  Order per owner is kept. A batch is bounded by ``BATCH_LIMITS`` (``shared.batches``, the
  same rule as a link's batches): at most ``MAX_BATCH`` replies and ``MAX_BATCH_BYTES`` of
  payload, but a larger reply goes alone.
- When a queue is full, ``send`` waits for room: the upstream stream that carries the replies
  slows down instead of the node buffering without bound. While the bus is not connected
  (Redis unreachable: the bus holds what it sends), a full queue drops its oldest reply
  instead (``paradoxplex_drops_total{reason="bus_hold_full"}``): local traffic on the same
  upstream stream is not slowed by an outage.
- What the bus could not deliver is counted per reply and logged by the bus:
  ``owner_unreachable`` (the owner was not reading and did not start before the bus gave up,
  or is dead), ``bus_hold_expired`` (Redis stayed unreachable longer than ``--bus-hold``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable

from paradoxplex.node.metrics import Metrics
from paradoxplex.node.tasks import checkpoint
from paradoxplex.shared import envelopes
from paradoxplex.shared.batches import BatchLimits
from paradoxplex.shared.drops import DropReason
from paradoxplex.shared.errors import FleetUnavailable
from paradoxplex.shared.fleet import FleetBus

log = logging.getLogger("paradoxplex.node.delivery")

DEFAULT_LIMIT = 10_000
MAX_BATCH = 1_000
MAX_BATCH_BYTES = 512 * 1024
BATCH_LIMITS = BatchLimits(max_items=MAX_BATCH, max_bytes=MAX_BATCH_BYTES)


class _Route:
    __slots__ = ("queue", "room", "sending", "task", "wakeup")

    def __init__(self) -> None:
        self.sending = False
        self.queue: deque[tuple[str, bytes]] = deque()
        self.wakeup = asyncio.Event()
        self.room = asyncio.Event()
        self.room.set()
        self.task: asyncio.Task[None] | None = None


class Courier:
    """Per-owner queues of bus envelopes, each drained by its own worker."""

    def __init__(
        self,
        bus: FleetBus,
        metrics: Metrics,
        *,
        sender: str,
        limit: int = DEFAULT_LIMIT,
        on_undelivered: Callable[[str], None] | None = None,
    ) -> None:
        self._bus = bus
        self.sender = sender
        self.metrics = metrics
        self.limit = limit
        self.on_undelivered = on_undelivered
        self.routes: dict[str, _Route] = {}

    def send_nowait(self, node_id: str, client_uuid: str, payload: bytes) -> bool:
        """Queue a reply for a socket on ``node_id``; False when that node's queue is full."""
        route = self.routes.get(node_id)
        if route is None:
            route = self.routes[node_id] = _Route()
            route.task = asyncio.create_task(self._work(node_id, route), name=f"courier {node_id}")
        if len(route.queue) >= self.limit:
            if self._bus.connected:
                route.room.clear()
                return False
            route.queue.popleft()
            self.metrics.drops.labels(DropReason.BUS_HOLD_FULL).inc()
        route.queue.append((client_uuid, payload))
        route.wakeup.set()
        return True

    async def send(self, node_id: str, client_uuid: str, payload: bytes) -> None:
        """Queue a reply, waiting while that node's queue is full."""
        while not self.send_nowait(node_id, client_uuid, payload):
            await self.routes[node_id].room.wait()

    async def _work(self, node_id: str, route: _Route) -> None:
        while True:
            while not route.queue:
                route.wakeup.clear()
                await route.wakeup.wait()
            batch = take_batch(route.queue)
            route.room.set()
            route.sending = True
            try:
                data = envelopes.deliver_batch(self.sender, batch, sent_at=time.time())
                delivered = await self._bus.send(node_id, data, count=len(batch))
            except FleetUnavailable:
                self.metrics.fleet_errors.inc()
                self.metrics.drops.labels(DropReason.BUS_HOLD_EXPIRED).inc(len(batch))
                continue
            finally:
                route.sending = False
            checkpoint()
            if delivered:
                self.metrics.bus_messages.labels("out").inc(len(batch))
                continue
            self.metrics.drops.labels(DropReason.OWNER_UNREACHABLE).inc(len(batch))
            if self.on_undelivered is not None:
                self.on_undelivered(node_id)

    @property
    def idle(self) -> bool:
        """Nothing queued, nothing being sent."""
        return not any(route.queue or route.sending for route in self.routes.values())

    async def close(self) -> None:
        for route in self.routes.values():
            if route.task is not None:
                route.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await route.task
        self.routes.clear()

    def __repr__(self) -> str:
        queued = sum(len(route.queue) for route in self.routes.values())
        return f"<Courier routes={len(self.routes)} queued={queued}>"


def take_batch(
    queue: deque[tuple[str, bytes]], limits: BatchLimits = BATCH_LIMITS
) -> list[tuple[str, bytes]]:
    """The next batch from the front of ``queue``, in order, within ``limits`` (counting
    payload bytes); a reply over ``max_bytes`` goes alone."""
    batch: list[tuple[str, bytes]] = []
    total = 0
    while queue and limits.admits(len(batch), total, len(queue[0][1])):
        item = queue.popleft()
        batch.append(item)
        total += len(item[1])
    return batch
