"""The node's upstream links, and placing held socket data on them.

Rules:
- ``submit`` places a session's held frames (its ``Flow`` owns them) one by one where the
  balancer says, at most its ``allowance`` (fairness: frames per loop turn, and its rate),
  then tells the session how many went (``placed``); when the balancer says Wait or
  NoUpstream, the flow keeps the rest (reading paused) and the session waits in line.
- When a link has room again or enters rotation, waiting sessions are retried in arrival order.
- Every message is numbered when it leaves the socket's held frames (``SessionInfo.seq``, in
  the order read): its delivery id is ``(client_uuid, seq)``.
- What a link gives back (queued on a link that left rotation, or held unacknowledged by an
  upstream whose stream is gone) waits in ``Redeliveries``, per socket in number order, and
  is placed before anything newer of that socket (``submit`` places a socket's redeliveries
  first and waits while one cannot be placed). Sent ones go again with attempt + 1, within
  ``max_deliveries`` and the retry budget (``shared.redelivery``); their ids go in
  ``Answers``. A message on its last delivery goes alone on its link (``links/deliveries``).
  A closed socket's are placed all the same (the upstream still gets what the
  socket sent; its replies are dropped as ``socket_closed``). What waits longer than
  ``hold_timeout`` is dropped (``hold_timeout``). While the pool closes (the node stops),
  what comes back is not placed again: counted (``node_stopping``, ``socket_closed``).
- A link out of rotation whose stream still runs (its upstream drains) may still hold a
  socket's messages: that socket's newer ones wait (``_limbo``) until the stream ends and
  what it did not finish is placed again, first. So order per socket holds across a drain.
- A hot handoff: ``divert(handler)`` sends every reply the links receive to ``handler``
  instead of the node's router (``divert(None)`` undoes it); ``take_numbered(sockets)`` takes
  those sockets' numbered messages that no upstream has (queued on links, waiting to be
  delivered again), which ``resume`` places first again, as they are (number and attempt),
  in the process the sockets move to, or here if they do not; ``hand_over(successor)``: what
  links give back from then on (unacknowledged when they close) goes to the successor, which
  delivers it again (``redeliver_elsewhere``).
- Lifecycle events of sockets this node never held open (a dead node's, its own previous
  incarnation's) are owed (``owe_events``): they wait, in order, until links can take them
  (a link enters rotation or has room again), ``OWED_EVENTS`` at most.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from itertools import islice

import grpc

from paradoxplex.node.links.link import UpstreamLink
from paradoxplex.node.links.queue import Outgoing
from paradoxplex.node.metrics import Metrics
from paradoxplex.node.sockets.session import Session
from paradoxplex.shared.balancing import DEFAULT_ROUTING, Balancer, Place
from paradoxplex.shared.config import DEFAULT_HOLD_TIMEOUT, DEFAULT_STREAMS, DEFAULT_UPSTREAM_QUEUE
from paradoxplex.shared.drops import DropReason
from paradoxplex.shared.health import Health
from paradoxplex.shared.redelivery import (
    DEFAULT_BUDGET_RATIO,
    DEFAULT_MAX_DELIVERIES,
    Answers,
    Redeliveries,
    RetryBudget,
    judge,
)
from paradoxplex.shared.unacked import AtMostOnce, UnackedLimits, UnackedTotals
from paradoxplex.shared.upstreams import UpstreamSpec
from paradoxplex.wire import upstream_pb2 as pb

log = logging.getLogger("paradoxplex.node.links")

ReplyHandler = Callable[[pb.OutputStreamRequest], Awaitable[None] | None]
#: Owed lifecycle events that wait for a link at most; past it the oldest are dropped, counted.
OWED_EVENTS = 100_000


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
        self.waiting: deque[Session] = deque()
        self._waiting_ids: set[str] = set()
        self._on_change = on_change
        self._has_room = self._link_has_room
        self._retrying = False
        self._removing: set[UpstreamLink] = set()
        self._in_rotation = False
        self._closing = False
        self.owed: deque[tuple[str, pb.SocketEvent]] = deque()
        self._none_owed = asyncio.Event()
        self._none_owed.set()
        self._diverted: ReplyHandler | None = None
        self._successor: Callable[[list[Outgoing]], None] | None = None
        # acknowledged delivery (see the rules)
        self.channel = f"{node_id or 'node'}/{uuid.uuid4().hex[:12]}"  # this incarnation's
        self.max_deliveries = max_deliveries
        self.unacked = unacked or UnackedLimits()
        self.totals = totals or UnackedTotals()
        self.budget = RetryBudget(
            ratio=retry_budget, burst=self.unacked.messages, now=time.monotonic()
        )
        self.answers = Answers()
        self.redeliveries: Redeliveries[Outgoing] = Redeliveries(self.totals)
        self.redelivered = 0
        self.hold_timeout = hold_timeout
        self._orphans: set[str] = set()  # closed sockets with redeliveries waiting
        self._limbo: set[str] = set()  # links out of rotation holding unacknowledged messages
        self._expiry: asyncio.TimerHandle | None = None
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
            answers=self.answers,
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
        self._limbo.discard(upstream_id)
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
        await asyncio.gather(
            *(self.remove(upstream_id, grace=grace, stopping=True) for upstream_id in self.links)
        )
        if self._expiry is not None:
            self._expiry.cancel()

    def ready(self) -> bool:
        return bool(self.balancer_members())

    def balancer_members(self) -> list[str]:
        return [link.id for link in self.links.values() if link.in_rotation]

    def _link_has_room(self, upstream_id: str) -> bool:
        return self.links[upstream_id].has_room()

    def _has_room_for_final(self, upstream_id: str) -> bool:
        link = self.links[upstream_id]
        return link.has_room() and link.deliveries.final is None

    # placing ----------------------------------------------------------------------------

    def submit(self, session: Session) -> None:
        info = session.info
        if info is None:
            return
        client_uuid = info.client_uuid
        if self._limbo and self._in_limbo(client_uuid):
            self._wait(session)
            session.placed(0)  # behind what a draining upstream still holds of it
            return
        if (
            self.redeliveries
            and client_uuid in self.redeliveries
            and not self._place_redelivered(client_uuid)
        ):
            self._wait(session)
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
                self._wait(session)
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
        as soon as links can take them; past ``OWED_EVENTS`` waiting, the oldest are dropped
        (counted)."""
        owed = self.owed
        owed.extend(events)
        excess = len(owed) - OWED_EVENTS
        for _ in range(excess):
            owed.popleft()
        if excess > 0:
            self.metrics.drops.labels(DropReason.LIFECYCLE_EVENT_NO_UPSTREAM).inc(excess)
        if owed:
            self._none_owed.clear()
        self._place_owed()

    async def owed_placed(self) -> None:
        """Returns once no owed event waits for a link."""
        await self._none_owed.wait()

    def _place_owed(self) -> None:
        owed = self.owed
        while owed:
            client_uuid, event = owed[0]
            decision = self.balancer.pick(client_uuid, self._has_room)
            if not isinstance(decision, Place):
                return
            self.links[decision.upstream_id].enqueue(Outgoing(client_uuid, b"", event))
            self.balancer.forget(client_uuid)  # a gone socket: sticky routing keeps no entry
            owed.popleft()
        self._none_owed.set()

    def _in_limbo(self, client_uuid: str) -> bool:
        for upstream_id in self._limbo:
            link = self.links.get(upstream_id)
            if link is not None and link.deliveries.holds(client_uuid):
                return True
        return False

    def _place_redelivered(self, client_uuid: str) -> bool:
        """Place what waits to be delivered again for this socket, in order, as far as links
        take it; True when none waits any more."""
        waiting = self.redeliveries.waiting(client_uuid)
        pick, links, last = self.balancer.pick, self.links, self.max_deliveries
        placed = 0
        for item in waiting:
            final = item.attempt >= last  # its last delivery: alone on its link
            decision = pick(client_uuid, self._has_room_for_final if final else self._has_room)
            if not isinstance(decision, Place):
                break
            link = links[decision.upstream_id]
            if final:
                link.deliveries.take_final(item)
            link.enqueue(item)
            placed += 1
        done = placed == len(waiting)
        self.redeliveries.placed(client_uuid, placed)
        return done

    def forget(self, client_uuid: str) -> None:
        self.balancer.forget(client_uuid)
        self._waiting_ids.discard(client_uuid)
        if client_uuid in self.redeliveries:
            self._orphans.add(client_uuid)
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
            if self._orphans:
                self._place_orphans()
            for _ in range(len(self.waiting)):
                session = self.waiting.popleft()
                self._waiting_ids.discard(session.client_uuid)
                if session.closing or not (
                    session.flow.held or session.client_uuid in self.redeliveries
                ):
                    continue
                self.submit(session)
                if session.client_uuid in self._waiting_ids:
                    break
        finally:
            self._retrying = False

    # LinkHost ---------------------------------------------------------------------------

    def link_changed(self, link: UpstreamLink) -> None:
        if not link.in_rotation and link.deliveries and link.streams.running:
            self._limbo.add(link.id)
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
            self._place_owed()
            self._retry_waiting()

    def link_room(self, link: UpstreamLink) -> None:
        if self.owed:
            asyncio.get_running_loop().call_soon(self._place_owed)
        if self.waiting or self._orphans:
            asyncio.get_running_loop().call_soon(self._retry_waiting)

    def reroute(self, items: list[Outgoing]) -> None:
        """Items that were queued on a link that left rotation: placed again, first."""
        if items:
            log.info("re-placing %d queued messages from a link that left rotation", len(items))
            self._again([], items)

    def redeliver(self, link: UpstreamLink, sent: list[Outgoing], queued: list[Outgoing]) -> None:
        """What ``link``'s upstream held unacknowledged, and its queue: delivered again."""
        self._limbo.discard(link.id)
        if sent:
            log.info(
                "upstream %s held %d unacknowledged messages: delivering them again",
                link.id,
                len(sent),
            )
        self._again(sent, queued)
        if self.waiting:
            self._retry_waiting()

    def _again(self, sent: list[Outgoing], queued: list[Outgoing]) -> None:
        if self._successor is not None:  # the node lives on in another process: it delivers
            self._successor([*sent, *queued])
            return
        if self._closing:
            self.metrics.at_most_once.labels(AtMostOnce.NODE_STOPPING).inc(len(sent))
            if queued:
                self.metrics.drops.labels(DropReason.SOCKET_CLOSED).inc(len(queued))
            return
        now = time.monotonic()
        judged = judge(
            sent,
            queued,
            max_deliveries=self.max_deliveries,
            budget=self.budget,
            now=now,
            first_deliveries=self._first_deliveries(),
        )
        for item in judged.exhausted:
            self.metrics.drops.labels(DropReason.REDELIVERY_EXHAUSTED).inc()
            log.warning(
                "socket %s: message %d dropped after %d deliveries without an acknowledgement "
                "(redelivery_exhausted)",
                item.client_uuid,
                item.seq,
                item.attempt,
            )
        if judged.over_budget:
            self.metrics.drops.labels(DropReason.RETRY_BUDGET).inc(len(judged.over_budget))
            log.warning(
                "%d messages not delivered again: the retry budget is spent (retry_budget)",
                len(judged.over_budget),
            )
        again = len(sent) - len(judged.exhausted) - len(judged.over_budget)
        if again:
            self.redelivered += again
            self.metrics.redeliveries.inc(again)
            for item in judged.again[:again]:
                self.answers.redelivered(item.client_uuid, item.seq)
        for client_uuid in self.redeliveries.add(judged.again, now=now):
            session = self.sessions.get(client_uuid)
            if session is not None and not session.closing:
                self.submit(session)
            elif not self._place_redelivered(client_uuid):
                self._orphans.add(client_uuid)
        self._arm_expiry()

    def _first_deliveries(self) -> int:
        sent = sum(link.counts.sent for link in self.links.values())
        return sent - self.redelivered

    def _place_orphans(self) -> None:
        for client_uuid in list(self._orphans):
            if client_uuid in self.sessions:
                self._orphans.discard(client_uuid)  # open again: its session places them
            elif self._place_redelivered(client_uuid):
                self._orphans.discard(client_uuid)
            else:
                return

    def _arm_expiry(self) -> None:
        if self._expiry is not None:
            return
        at = self.redeliveries.next_expiry(self.hold_timeout)
        if at is not None:
            delay = max(0.0, at - time.monotonic())
            self._expiry = asyncio.get_running_loop().call_later(delay, self._expire)

    def _expire(self) -> None:
        """Redeliveries that waited ``hold_timeout`` for a link: dropped, counted."""
        self._expiry = None
        expired = self.redeliveries.expired(now=time.monotonic(), timeout=self.hold_timeout)
        if expired:
            self.metrics.drops.labels(DropReason.HOLD_TIMEOUT).inc(len(expired))
            log.warning(
                "%d messages waited %.1fs to be delivered again and were dropped (hold_timeout)",
                len(expired),
                self.hold_timeout,
            )
            for item in expired:
                self._orphans.discard(item.client_uuid)
        self._arm_expiry()

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
        taken: dict[str, list[Outgoing]] = {}
        for link in self.links.values():
            for item in link.queue.drain():
                if item.client_uuid in client_uuids:
                    taken.setdefault(item.client_uuid, []).append(item)
                else:
                    link.queue.put(item)
        for client_uuid in client_uuids:
            waiting = list(self.redeliveries.waiting(client_uuid))
            if waiting:
                self.redeliveries.placed(client_uuid, len(waiting))
                taken.setdefault(client_uuid, []).extend(waiting)
        for items in taken.values():
            items.sort(key=lambda item: item.seq)
        return taken

    def resume(self, items: list[Outgoing]) -> None:
        """Numbered messages to place before anything newer of their sockets, as they are
        (number and attempt): what ``take_numbered`` took."""
        if not items:
            return
        for client_uuid in self.redeliveries.add(items, now=time.monotonic()):
            session = self.sessions.get(client_uuid)
            if session is not None and not session.closing:
                self.submit(session)
            elif not self._place_redelivered(client_uuid):
                self._orphans.add(client_uuid)
        self._arm_expiry()

    def hand_over(self, successor: Callable[[list[Outgoing]], None]) -> None:
        """What links give back from now on goes to ``successor``, not placed here."""
        self._successor = successor

    def redeliver_elsewhere(self, items: list[Outgoing]) -> None:
        """What an upstream did not acknowledge to the process this one took over from: to be
        delivered again, as after a link of this process broke."""
        self._again(items, [])
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
