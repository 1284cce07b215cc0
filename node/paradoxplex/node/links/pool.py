"""The node's upstream links, and placing held socket data on them.

Rules:
- ``submit`` places a session's held frames (its ``Flow`` owns them) one by one where the
  balancer says, at most its ``allowance`` (fairness: frames per loop turn, and its rate),
  then tells the session how many went (``placed``); when the balancer says Wait or
  NoUpstream, the flow keeps the rest (reading paused) and the session waits in line.
- When a link has room again or enters rotation, waiting sessions are retried in arrival order.
- Items queued on a link that left rotation go back to the front of their sessions' held data
  (``Flow.requeue``, order kept) and are placed again; items of sockets already closed are
  dropped and counted.
- A hot handoff: ``divert(handler)`` sends every reply the links receive to ``handler``
  instead of the node's router (``divert(None)`` undoes it); ``take_back()`` returns what the
  links still queue to the sessions' held data, without placing it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from itertools import islice

import grpc

from paradoxplex.node.links.link import UpstreamLink
from paradoxplex.node.links.queue import Outgoing
from paradoxplex.node.metrics import Metrics
from paradoxplex.node.sockets.session import Session
from paradoxplex.shared.balancing import DEFAULT_ROUTING, Balancer, Place
from paradoxplex.shared.config import DEFAULT_STREAMS, DEFAULT_UPSTREAM_QUEUE
from paradoxplex.shared.drops import DropReason
from paradoxplex.shared.health import Health
from paradoxplex.shared.upstreams import UpstreamSpec
from paradoxplex.wire import upstream_pb2 as pb

log = logging.getLogger("paradoxplex.node.links")

ReplyHandler = Callable[[pb.OutputStreamRequest], Awaitable[None] | None]


class UpstreamPool:
    def __init__(
        self,
        *,
        metrics: Metrics,
        sessions: Mapping[str, Session],
        receive_reply: ReplyHandler,
        routing: str = DEFAULT_ROUTING,
        queue_limit: int = DEFAULT_UPSTREAM_QUEUE,
        streams: int = DEFAULT_STREAMS,
        batch: bool = True,
        on_change: Callable[[UpstreamLink], None] | None = None,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        self.metrics = metrics
        self.credentials = credentials
        self.sessions = sessions
        self._receive = receive_reply
        self.balancer = Balancer(routing)
        self.queue_limit = queue_limit
        self.streams = streams
        self.batch = batch
        self.links: dict[str, UpstreamLink] = {}
        self.waiting: deque[Session] = deque()
        self._waiting_ids: set[str] = set()
        self._on_change = on_change
        self._has_room = self._link_has_room
        self._retrying = False
        self._removing: set[UpstreamLink] = set()
        self._in_rotation = False
        self._closing = False
        self._diverted: ReplyHandler | None = None

    # registry ---------------------------------------------------------------------------

    def add(self, spec: UpstreamSpec) -> UpstreamLink:
        link = self.links.get(spec.id)
        if link is not None:
            return link
        link = UpstreamLink(
            spec,
            self,
            queue_limit=self.queue_limit,
            streams=self.streams,
            batch=self.batch,
            credentials=self.credentials,
        )
        self.links[spec.id] = link
        self._export_state(link)
        link.start()
        log.info("upstream %s added", spec.id)
        return link

    async def remove(self, upstream_id: str, *, grace: float = 5.0, stopping: bool = False) -> None:
        """Close the link to an upstream; ``stopping``: because this node stops (logged at
        DEBUG, since the upstream stays registered for the fleet)."""
        link = self.links.get(upstream_id)
        if link is None or link in self._removing:
            return
        self._removing.add(link)
        try:
            await link.close(grace=grace)
        finally:
            self._removing.discard(link)
        if self.links.get(upstream_id) is link:
            del self.links[upstream_id]
        for state in Health:
            self.metrics.upstream_state.remove(upstream_id, state.value)
        with contextlib.suppress(KeyError):
            self.metrics.upstream_rtt.remove(upstream_id)
        if stopping:
            log.debug("upstream %s link closed: node stopping", upstream_id)
        else:
            log.info("upstream %s removed", upstream_id)

    async def close(self, *, grace: float = 5.0) -> None:
        self._closing = True
        for upstream_id in list(self.links):
            await self.remove(upstream_id, grace=grace, stopping=True)

    def ready(self) -> bool:
        return bool(self.balancer_members())

    def balancer_members(self) -> list[str]:
        return [link.id for link in self.links.values() if link.in_rotation]

    def _link_has_room(self, upstream_id: str) -> bool:
        return self.links[upstream_id].has_room()

    # placing ----------------------------------------------------------------------------

    def submit(self, session: Session) -> None:
        held = session.flow.held
        pick = self.balancer.pick
        client_uuid = session.client_uuid
        links = self.links
        placed = 0
        for frame in islice(held, session.allowance()):
            decision = pick(client_uuid, self._has_room)
            if not isinstance(decision, Place):
                self._wait(session)
                break
            links[decision.upstream_id].enqueue(Outgoing(client_uuid, frame))
            placed += 1
        session.placed(placed)

    def send_event(self, client_uuid: str, event: pb.SocketEvent) -> bool:
        """A lifecycle event, placed like data; False (counted) when no link can take it."""
        decision = self.balancer.pick(client_uuid, self._has_room)
        if isinstance(decision, Place):
            self.links[decision.upstream_id].enqueue(Outgoing(client_uuid, b"", event))
            return True
        self.metrics.drops.labels(DropReason.LIFECYCLE_EVENT_NO_UPSTREAM).inc()
        return False

    def forget(self, client_uuid: str) -> None:
        self.balancer.forget(client_uuid)
        self._waiting_ids.discard(client_uuid)
        if len(self.waiting) > 2 * len(self._waiting_ids) + 64:  # drop closed sessions
            self.waiting = deque(s for s in self.waiting if s.client_uuid in self._waiting_ids)

    def _wait(self, session: Session) -> None:
        if session.client_uuid not in self._waiting_ids:
            self._waiting_ids.add(session.client_uuid)
            self.waiting.append(session)

    def _retry_waiting(self) -> None:
        """Give waiting sessions another go, in order, until links are full again."""
        if self._retrying:
            return
        self._retrying = True
        try:
            for _ in range(len(self.waiting)):
                session = self.waiting.popleft()
                self._waiting_ids.discard(session.client_uuid)
                if session.closing or not session.flow.held:
                    continue
                self.submit(session)
                if session.client_uuid in self._waiting_ids:
                    break
        finally:
            self._retrying = False

    # LinkHost ---------------------------------------------------------------------------

    def link_changed(self, link: UpstreamLink) -> None:
        members = self.balancer_members()
        if self._in_rotation and not members and not self._closing:
            log.warning(
                "no upstream in rotation: sockets are held (reading paused) until one is ready"
            )
        self._in_rotation = bool(members)
        self.balancer.set_members(members)
        self._export_state(link)
        if self._on_change is not None:
            self._on_change(link)
        if link.in_rotation:
            self._retry_waiting()

    def link_room(self, link: UpstreamLink) -> None:
        if self.waiting:
            asyncio.get_running_loop().call_soon(self._retry_waiting)

    def reroute(self, items: list[Outgoing]) -> None:
        by_session: dict[str, list[bytes]] = {}
        for item in items:
            if item.event is not None:
                self.send_event(item.client_uuid, item.event)
            else:
                by_session.setdefault(item.client_uuid, []).append(item.payload)
        for client_uuid, payloads in by_session.items():
            session = self.sessions.get(client_uuid)
            if session is None or session.closing:
                self.metrics.drops.labels(DropReason.SOCKET_CLOSED).inc(len(payloads))
                continue
            session.flow.requeue(payloads)
            self.submit(session)
        if by_session:
            log.info("re-placed %d queued messages from a link that left rotation", len(items))

    def receive_reply(self, reply: pb.OutputStreamRequest) -> Awaitable[None] | None:
        if self._diverted is not None:
            return self._diverted(reply)
        return self._receive(reply)

    def divert(self, handler: ReplyHandler | None) -> None:
        """Replies go to ``handler`` from now on (None: to the node's router again)."""
        self._diverted = handler

    def queued(self) -> int:
        """Items queued on links in rotation, not yet sent."""
        return sum(len(link.queue) for link in self.links.values() if link.in_rotation)

    def take_back(self) -> None:
        """What the links queue goes back to the front of its sessions' held data, in order
        (lifecycle events stay queued); sessions gone meanwhile lose theirs, counted."""
        for link in self.links.values():
            items = link.queue.drain()
            events = [item for item in items if item.event is not None]
            for item in events:
                link.queue.put(item)
            by_session: dict[str, list[bytes]] = {}
            for item in items:
                if item.event is None:
                    by_session.setdefault(item.client_uuid, []).append(item.payload)
            for client_uuid, payloads in by_session.items():
                session = self.sessions.get(client_uuid)
                if session is None or session.closing:
                    self.metrics.drops.labels(DropReason.SOCKET_CLOSED).inc(len(payloads))
                    continue
                session.flow.requeue(payloads)

    def _export_state(self, link: UpstreamLink) -> None:
        for state in Health:
            value = 1 if link.state is state else 0
            self.metrics.upstream_state.labels(link.id, state.value).set(value)

    def __repr__(self) -> str:
        ready = len(self.balancer_members())
        return f"<UpstreamPool links={len(self.links)} ready={ready} waiting={len(self.waiting)}>"
