"""The node's upstream links, and placing held socket data on them.

Rules:
- ``submit`` places a session's held frames (its ``Flow`` owns them) one by one where the
  balancer says, at most its ``allowance`` (fairness: frames per loop turn, and its rate),
  then tells the session how many went (``placed``); when the balancer says Wait or
  NoUpstream, the flow keeps the rest (reading paused) and the session waits in line.
- When a link has room again or enters rotation, the sessions waiting in line
  (``links/waiting``, ``WaitingLine``) are retried in arrival order.
- Every message is numbered when it leaves the socket's held frames (``SessionInfo.seq``, in
  the order read): its delivery id is ``(client_uuid, seq)``.
- What a link gives back (queued on a link that left rotation, or held unacknowledged by an
  upstream whose stream is gone) is delivered again, placed before anything newer of its
  socket (``submit`` places a socket's redeliveries first and waits while one cannot be
  placed), and a draining link's sockets wait for it (its limbo): ``links/redelivery``
  (``Redelivery``) decides and keeps what waits; while the pool closes (the node stops),
  nothing is placed again.
- A hot handoff: ``divert(handler)`` sends every reply the links receive to ``handler``
  instead of the node's router (``divert(None)`` undoes it); ``take_numbered(sockets)`` takes
  those sockets' numbered messages that no upstream has (queued on links, waiting to be
  delivered again), which ``resume`` places first again, as they are (number and attempt),
  in the process the sockets move to, or here if they do not; ``hand_over(successor)``: what
  links give back from then on (unacknowledged when they close) goes to the successor, which
  delivers it again (``redeliver_elsewhere``).
- Lifecycle events of sockets this node never held open (a dead node's, its own previous
  incarnation's) are owed (``owe_events``): they wait, in order, in ``links/owed``
  (``OwedEvents``) until links can take them (a link enters rotation or has room again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from itertools import islice

import grpc

from paradoxplex.node.links.link import UpstreamLink
from paradoxplex.node.links.owed import OwedEvents
from paradoxplex.node.links.queue import Outgoing
from paradoxplex.node.links.redelivery import Redelivery
from paradoxplex.node.links.waiting import WaitingLine
from paradoxplex.node.metrics import Metrics
from paradoxplex.node.sockets.session import Session
from paradoxplex.shared.balancing import DEFAULT_ROUTING, Balancer, Place
from paradoxplex.shared.config import DEFAULT_HOLD_TIMEOUT, DEFAULT_STREAMS, DEFAULT_UPSTREAM_QUEUE
from paradoxplex.shared.drops import DropReason
from paradoxplex.shared.health import Health
from paradoxplex.shared.redelivery import DEFAULT_BUDGET_RATIO, DEFAULT_MAX_DELIVERIES
from paradoxplex.shared.unacked import UnackedLimits, UnackedTotals
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
        node_id: str = "",
        max_deliveries: int = DEFAULT_MAX_DELIVERIES,
        unacked: UnackedLimits | None = None,
        totals: UnackedTotals | None = None,
        retry_budget: float = DEFAULT_BUDGET_RATIO,
        hold_timeout: float = DEFAULT_HOLD_TIMEOUT,
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
        self.waiting = WaitingLine()
        self._on_change = on_change
        self._has_room = self._link_has_room
        self._retrying = False
        self._removing: set[UpstreamLink] = set()
        self._in_rotation = False
        self._closing = False
        self.owed = OwedEvents(
            balancer=self.balancer, links=self.links, has_room=self._has_room, metrics=metrics
        )
        self._diverted: ReplyHandler | None = None
        # acknowledged delivery (see the rules)
        self.channel = f"{node_id or 'node'}/{uuid.uuid4().hex[:12]}"  # this incarnation's
        self.unacked = unacked or UnackedLimits()
        self.totals = totals or UnackedTotals()
        self.redelivery = Redelivery(
            balancer=self.balancer,
            links=self.links,
            has_room=self._has_room,
            sessions=sessions,
            metrics=metrics,
            unacked=self.unacked,
            totals=self.totals,
            max_deliveries=max_deliveries,
            retry_budget=retry_budget,
            hold_timeout=hold_timeout,
        )
        # the same objects, read by ``submit`` on every call without one more look-up
        self.redeliveries = self.redelivery.redeliveries
        self._limbo = self.redelivery.limbo
        metrics.unacked_messages.set_function(lambda: self.totals.messages)
        metrics.unacked_bytes.set_function(lambda: self.totals.bytes)

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
            unacked=self.unacked,
            totals=self.totals,
            answers=self.redelivery.answers,
            channel=self.channel,
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
            await link.close(grace=grace, drain=not stopping)
        finally:
            self._removing.discard(link)
        if self.links.get(upstream_id) is link:
            del self.links[upstream_id]
        self.redelivery.leave_limbo(upstream_id)
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
        self.redelivery.stop()
        await asyncio.gather(
            *(self.remove(upstream_id, grace=grace, stopping=True) for upstream_id in self.links)
        )
        self.redelivery.close()

    def ready(self) -> bool:
        return bool(self.balancer_members())

    def balancer_members(self) -> list[str]:
        return [link.id for link in self.links.values() if link.in_rotation]

    def _link_has_room(self, upstream_id: str) -> bool:
        return self.links[upstream_id].has_room()

    # placing ----------------------------------------------------------------------------

    def submit(self, session: Session) -> None:
        info = session.info
        if info is None:
            return
        client_uuid = info.client_uuid
        if self._limbo and self.redelivery.in_limbo(client_uuid):
            self.waiting.join(session)
            session.placed(0)  # behind what a draining upstream still holds of it
            return
        if (
            self.redeliveries
            and client_uuid in self.redeliveries
            and not self.redelivery.place(client_uuid)
        ):
            self.waiting.join(session)
            session.placed(0)  # its later messages wait behind its redeliveries
            return
        held = session.flow.held
        pick = self.balancer.pick
        links = self.links
        placed = 0
        seq = info.seq
        for frame in islice(held, session.allowance()):
            decision = pick(client_uuid, self._has_room)
            if not isinstance(decision, Place):
                self.waiting.join(session)
                break
            seq += 1
            links[decision.upstream_id].enqueue(Outgoing(client_uuid, frame, None, seq))
            placed += 1
        info.seq = seq
        session.placed(placed)

    def send_event(self, client_uuid: str, event: pb.SocketEvent, seq: int = 0) -> bool:
        """A lifecycle event (``seq``: its number among the socket's messages), placed like
        data; False (counted) when no link can take it."""
        decision = self.balancer.pick(client_uuid, self._has_room)
        if isinstance(decision, Place):
            self.links[decision.upstream_id].enqueue(Outgoing(client_uuid, b"", event, seq))
            return True
        self.metrics.drops.labels(DropReason.LIFECYCLE_EVENT_NO_UPSTREAM).inc()
        return False

    def owe_events(self, events: Iterable[tuple[str, pb.SocketEvent]]) -> None:
        """Lifecycle events for sockets gone without closing here: placed like data, in order,
        as soon as links can take them (``OwedEvents``)."""
        self.owed.owe(events)

    async def owed_placed(self) -> None:
        """Returns once no owed event waits for a link."""
        await self.owed.placed()

    def forget(self, client_uuid: str) -> None:
        self.balancer.forget(client_uuid)
        self.waiting.leave(client_uuid)
        self.redelivery.closed(client_uuid)

    def _retry_waiting(self) -> None:
        """Give waiting sessions another go, in order, until links are full again."""
        if self._retrying:
            return
        self._retrying = True
        try:
            if self.redelivery.orphans:
                self.redelivery.place_orphans()
            self.waiting.retry(self.submit, self.redeliveries)
        finally:
            self._retrying = False

    # LinkHost ---------------------------------------------------------------------------

    def link_changed(self, link: UpstreamLink) -> None:
        self.redelivery.enter_limbo(link)
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
            self.owed.place()
            self._retry_waiting()

    def link_room(self, link: UpstreamLink) -> None:
        if self.owed:
            asyncio.get_running_loop().call_soon(self.owed.place)
        if self.waiting or self.redelivery.orphans:
            asyncio.get_running_loop().call_soon(self._retry_waiting)

    def reroute(self, items: list[Outgoing]) -> None:
        """Items that were queued on a link that left rotation: placed again, first."""
        if items:
            log.info("re-placing %d queued messages from a link that left rotation", len(items))
            self._place_again(self.redelivery.again([], items))

    def redeliver(self, link: UpstreamLink, sent: list[Outgoing], queued: list[Outgoing]) -> None:
        """What ``link``'s upstream held unacknowledged, and its queue: delivered again."""
        self.redelivery.leave_limbo(link.id)
        if sent:
            log.info(
                "upstream %s held %d unacknowledged messages: delivering them again",
                link.id,
                len(sent),
            )
        self._place_again(self.redelivery.again(sent, queued))
        if self.waiting:
            self._retry_waiting()

    def _place_again(self, client_uuids: list[str]) -> None:
        """These sockets have messages waiting to be delivered again: an open one's go
        through its ``submit``, a closed one's are placed all the same."""
        for client_uuid in client_uuids:
            session = self.sessions.get(client_uuid)
            if session is not None and not session.closing:
                self.submit(session)
            else:
                self.redelivery.place_closed(client_uuid)
        self.redelivery.arm_expiry()

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

    def take_numbered(self, client_uuids: Collection[str]) -> dict[str, list[Outgoing]]:
        """These sockets' numbered messages that no upstream has: queued on links (the other
        sockets' stay queued, in order) and waiting to be delivered again; per socket, in
        number order."""
        return self.redelivery.take(client_uuids)

    def resume(self, items: list[Outgoing]) -> None:
        """Numbered messages to place before anything newer of their sockets, as they are
        (number and attempt): what ``take_numbered`` took."""
        if items:
            self._place_again(self.redelivery.resume(items))

    def hand_over(self, successor: Callable[[list[Outgoing]], None]) -> None:
        """What links give back from now on goes to ``successor``, not placed here."""
        self.redelivery.hand_over(successor)

    def redeliver_elsewhere(self, items: list[Outgoing]) -> None:
        """What an upstream did not acknowledge to the process this one took over from: to be
        delivered again, as after a link of this process broke."""
        self._place_again(self.redelivery.again(items, []))
        if self.waiting:
            self._retry_waiting()

    def _export_state(self, link: UpstreamLink) -> None:
        for state in Health:
            value = 1 if link.state is state else 0
            self.metrics.upstream_state.labels(link.id, state.value).set(value)

    def __repr__(self) -> str:
        ready = len(self.balancer_members())
        return (
            f"<UpstreamPool links={len(self.links)} ready={ready} waiting={len(self.waiting)} "
            f"redeliveries={len(self.redeliveries)} owed={len(self.owed)} {self.totals!r}>"
        )
