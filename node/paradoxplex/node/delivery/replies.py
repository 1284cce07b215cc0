"""Where an upstream's reply goes: a socket here, the node that holds it, or every node.

Rules:
- Every reply goes through the core's decision (``route_reply``, ``route_broadcast``); this
  room only carries it out: write, forward through the outbox, look the owner up, retry later.
- ``receive_reply`` stays synchronous when it can: a local write or a forward that fits in
  its queue returns None; otherwise it returns a coroutine that the upstream link awaits, so
  a full forwarding queue slows down the stream that fills it.
- The owner cache (``Owners``) holds at most ``OWNER_CACHE`` entries and is cleared whole when
  full; a node that did not take its replies is forgotten (``forget_node``, told by the
  courier), and so is everything after a fleet resync (``clear``, told by the upkeep). It is
  made before the router and the courier, which both reach it.
- At most ``UNKNOWN_LIMIT`` replies wait for a socket the fleet does not know yet; past that
  a reply for an unknown socket is undeliverable at once.
- What cannot be delivered is counted in ``paradoxplex_drops_total{reason}`` and logged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Iterable, Mapping
from typing import Protocol

from paradoxplex.node.metrics import Metrics
from paradoxplex.node.sockets.session import Session
from paradoxplex.node.tasks import TaskSet
from paradoxplex.shared import envelopes
from paradoxplex.shared.drops import DropReason
from paradoxplex.shared.errors import FleetUnavailable
from paradoxplex.shared.fleet import FleetState
from paradoxplex.shared.routing import (
    Action,
    Forward,
    LookUp,
    PublishBroadcast,
    RetryLater,
    WriteLocal,
    route_broadcast,
    route_reply,
)
from paradoxplex.shared.sessions import BroadcastTarget, SessionInfo
from paradoxplex.wire import bus_pb2
from paradoxplex.wire import upstream_pb2 as pb

log = logging.getLogger("paradoxplex.node.delivery")

OWNER_CACHE = 65_536
UNKNOWN_LIMIT = 10_000
#: Local sockets a broadcast writes to between two yields to the loop (see ``broadcast``).
BROADCAST_SLICE = 512

TARGETS = {
    pb.BROADCAST_ALL: BroadcastTarget.ALL,
    pb.BROADCAST_ACTIVE: BroadcastTarget.ACTIVE,
    pb.BROADCAST_NOT_ACTIVE: BroadcastTarget.PAUSED,
}


class Outbox(Protocol):
    """How replies leave this node (the bus endpoint)."""

    def forward_nowait(self, node_id: str, client_uuid: str, payload: bytes) -> bool:
        """Queue a reply for a socket on ``node_id``; False when that queue is full."""

    async def forward(self, node_id: str, client_uuid: str, payload: bytes) -> None:
        """Queue a reply, waiting for room."""

    async def publish_broadcast(
        self, target: BroadcastTarget, label: tuple[str, str] | None, payload: bytes
    ) -> None:
        """Once, for every other node."""


class Owners(dict[str, str]):
    """Which node holds a socket, as last looked up: ``client_uuid`` → node id (a dict: the
    reply path reads it with ``get``)."""

    def remember(self, client_uuid: str, node_id: str) -> None:
        if len(self) >= OWNER_CACHE:
            self.clear()
        self[client_uuid] = node_id

    def forget_node(self, node_id: str) -> None:
        """Replies to ``node_id`` went undelivered: look its sockets' owners up again."""
        for client_uuid in [s for s, owner in self.items() if owner == node_id]:
            del self[client_uuid]


class ReplyRouter:
    """Routes upstream replies and broadcasts for one node."""

    def __init__(
        self,
        *,
        node_id: str,
        sessions: Mapping[str, Session],
        fleet: FleetState,
        owners: Owners,
        outbox: Outbox,
        metrics: Metrics,
        tasks: TaskSet,
    ) -> None:
        self.node_id = node_id
        self.sessions = sessions
        self.fleet = fleet
        self.outbox = outbox
        self.metrics = metrics
        self.tasks = tasks
        self.owners = owners
        self.waiting = 0
        self._shared = fleet.shared
        self._is_local = sessions.__contains__

    # from upstreams ---------------------------------------------------------------------

    def receive_reply(self, reply: pb.OutputStreamRequest) -> Awaitable[None] | None:
        """Route one upstream reply; None when done, else a coroutine to await."""
        target = reply.WhichOneof("target")
        if target == "client_uuid":
            client_uuid = reply.client_uuid
            owner = self.owners.get(client_uuid)
            action = route_reply(
                client_uuid, reply.payload, is_local=self._is_local, owner=owner, fleet=self._shared
            )
            return self._execute(action)
        if target == "broadcast":
            chosen = TARGETS.get(reply.broadcast)
            if chosen is None:
                self.metrics.bad_input.labels("unknown_broadcast").inc()
                return None
            label = envelopes.label_from_wire(reply.broadcast_label)
            return self._broadcast_reply(chosen, label, reply.payload)
        self.metrics.bad_input.labels("reply_without_target").inc()
        log.warning("an upstream sent a reply with no target; ignored")
        return None

    async def _broadcast_reply(
        self, target: BroadcastTarget, label: tuple[str, str] | None, payload: bytes
    ) -> None:
        await self.broadcast(target, label, payload)

    async def broadcast(
        self, target: BroadcastTarget, label: tuple[str, str] | None, payload: bytes
    ) -> int:
        """Publish once for the other nodes and write to each matching local socket once; the
        number of local sockets written to. The publish is started first and goes out while
        the local writes go on (they yield every ``BROADCAST_SLICE`` sockets), so the other
        nodes fan out at the same time as this one; it is awaited at the end. The local
        writes never wait for the fleet."""
        actions = route_broadcast(self._infos(), target, label, payload, fleet=self._shared)
        publishing: list[asyncio.Task[None]] = []
        written = tried = 0
        for action in actions:
            if not isinstance(action, WriteLocal):
                pending = self._execute(action)
                if pending is not None:
                    publishing.append(self.tasks.spawn(pending, "publish broadcast"))
                continue
            if tried and tried % BROADCAST_SLICE == 0:
                await asyncio.sleep(0)  # let the publish reach the bus
            tried += 1
            written += self._write(action)
        for task in publishing:
            await task
        return written

    # from other nodes -------------------------------------------------------------------

    def deliver_forwarded(self, items: Iterable[bus_pb2.Deliver]) -> None:
        """Replies another node forwarded here: written, or counted when the socket is gone
        (never forwarded again: the sender looked this node up as the owner)."""
        for item in items:
            action = route_reply(
                item.client_uuid, item.payload, is_local=self._is_local, owner=None
            )
            self._execute(action)

    def deliver_broadcast(
        self, target: BroadcastTarget, label: tuple[str, str] | None, payload: bytes
    ) -> None:
        """Another node's broadcast: to the matching sockets held here."""
        for action in route_broadcast(self._infos(), target, label, payload, fleet=False):
            self._execute(action)

    # owners -----------------------------------------------------------------------------

    async def _owner_of(self, client_uuid: str) -> str | None:
        owner = self.owners.get(client_uuid)
        if owner is not None:
            return owner
        try:
            info = await self.fleet.lookup_session(client_uuid)
        except FleetUnavailable:
            self.metrics.fleet_errors.inc()
            return None
        if info is None or info.node_id == self.node_id:
            return None
        self.owners.remember(client_uuid, info.node_id)
        return info.node_id

    # carrying out -----------------------------------------------------------------------

    def _execute(self, action: Action) -> Awaitable[None] | None:
        if isinstance(action, WriteLocal):
            self._write(action)
        elif isinstance(action, Forward):
            if not self.outbox.forward_nowait(action.node_id, action.client_uuid, action.payload):
                return self.outbox.forward(action.node_id, action.client_uuid, action.payload)
        elif isinstance(action, LookUp):
            return self._look_up(action)
        elif isinstance(action, RetryLater):
            self.waiting += 1
            self.tasks.spawn(self._retry(action), "retry unknown socket")
        elif isinstance(action, PublishBroadcast):
            return self.outbox.publish_broadcast(action.target, action.label, action.payload)
        else:
            self.metrics.drops.labels(DropReason.UNKNOWN_SOCKET).inc()
            log.info("reply for unknown socket %s dropped (%s)", action.client_uuid, action.reason)
        return None

    def _write(self, action: WriteLocal) -> bool:
        session = self.sessions.get(action.client_uuid)
        return session is not None and session.write(action.payload)

    def _reroute(self, action: LookUp | RetryLater, owner: str | None) -> Action:
        attempt = action.attempt if isinstance(action, RetryLater) else 0
        return route_reply(
            action.client_uuid,
            action.payload,
            is_local=self._is_local,
            owner=owner,
            fleet=self._shared,
            looked_up=True,
            attempt=attempt,
            may_retry=self.waiting < UNKNOWN_LIMIT,
        )

    async def _look_up(self, action: LookUp) -> None:
        decided = self._reroute(action, await self._owner_of(action.client_uuid))
        pending = self._execute(decided)
        if pending is not None:
            await pending

    async def _retry(self, action: RetryLater) -> None:
        """Wait and look up again while the core says so; then carry out its last word.
        (``waiting`` was counted up when this was spawned.)"""
        try:
            decided: Action = action
            while isinstance(decided, RetryLater):
                await asyncio.sleep(decided.delay)
                decided = self._reroute(decided, await self._owner_of(decided.client_uuid))
            pending = self._execute(decided)
            if pending is not None:
                await pending
        finally:
            self.waiting -= 1

    def _infos(self) -> list[SessionInfo]:
        return [s.info for s in self.sessions.values() if s.info is not None]

    def __repr__(self) -> str:
        return f"<ReplyRouter owners={len(self.owners)} waiting={self.waiting}>"
