"""The pool's side of acknowledged delivery: what links give back, placed again, first.

Rules:
- What a link gives back (queued on a link that left rotation, or held unacknowledged by an
  upstream whose stream is gone) waits in ``Redeliveries``, per socket in number order, and
  is placed before anything newer of that socket (the pool's ``submit`` places a socket's
  redeliveries first, ``place``, and waits while one cannot be placed). Sent ones go again
  with attempt + 1, within ``max_deliveries`` and the retry budget (``shared.redelivery``,
  ``again``); their ids go in ``Answers``. A message on its last delivery goes alone on its
  link (``links/deliveries``).
- While the pool closes (``stop``: the node stops), what comes back is not placed again:
  counted (``node_stopping``, ``socket_closed``). After a hot handoff (``hand_over``) it goes
  to the successor process, which delivers it again.
- ``again`` and ``resume`` return the sockets that now have messages waiting; the pool has an
  open socket's placed by its ``submit`` and a closed socket's by ``place_closed``: placed
  all the same (the upstream still gets what the socket sent; its replies are dropped as
  ``socket_closed``); what links cannot take yet waits as an orphan, tried again
  (``place_orphans``) when a link has room.
- What waits longer than ``hold_timeout`` is dropped, counted (``hold_timeout``): one timer,
  armed for the oldest (``arm_expiry``), cancelled by ``close``.
- A link out of rotation whose stream still runs (its upstream drains) may still hold a
  socket's messages (``enter_limbo``): that socket's newer ones wait (``in_limbo``) until the
  stream ends (``leave_limbo``) and what it did not finish is placed again, first. So order
  per socket holds across a drain.
- ``take`` gives a hot handoff these sockets' numbered messages that no upstream has: queued
  on links (the other sockets' stay queued, in order) and waiting to be delivered again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Mapping

from paradoxplex.node.links.link import UpstreamLink
from paradoxplex.node.links.queue import Outgoing
from paradoxplex.node.metrics import Metrics
from paradoxplex.node.sockets.session import Session
from paradoxplex.shared.balancing import Balancer, Place
from paradoxplex.shared.config import DEFAULT_HOLD_TIMEOUT
from paradoxplex.shared.drops import DropReason
from paradoxplex.shared.redelivery import (
    DEFAULT_BUDGET_RATIO,
    DEFAULT_MAX_DELIVERIES,
    Answers,
    Redeliveries,
    RetryBudget,
    judge,
)
from paradoxplex.shared.unacked import AtMostOnce, UnackedLimits, UnackedTotals

log = logging.getLogger("paradoxplex.node.links")


class Redelivery:
    """What waits to be placed again, the retry budget, the limbo and the orphans (see the
    module's rules)."""

    def __init__(
        self,
        *,
        balancer: Balancer,
        links: Mapping[str, UpstreamLink],
        has_room: Callable[[str], bool],
        sessions: Mapping[str, Session],
        metrics: Metrics,
        unacked: UnackedLimits,
        totals: UnackedTotals,
        max_deliveries: int = DEFAULT_MAX_DELIVERIES,
        retry_budget: float = DEFAULT_BUDGET_RATIO,
        hold_timeout: float = DEFAULT_HOLD_TIMEOUT,
    ) -> None:
        self._balancer = balancer
        self._links = links
        self._has_room = has_room
        self._sessions = sessions
        self._metrics = metrics
        self.max_deliveries = max_deliveries
        self.hold_timeout = hold_timeout
        self.budget = RetryBudget(ratio=retry_budget, burst=unacked.messages, now=time.monotonic())
        self.answers = Answers()
        self.redeliveries: Redeliveries[Outgoing] = Redeliveries(totals)
        self.redelivered = 0
        self.orphans: set[str] = set()  # closed sockets with redeliveries waiting
        self.limbo: set[str] = set()  # links out of rotation holding unacknowledged messages
        self._expiry: asyncio.TimerHandle | None = None
        self._stopping = False
        self._successor: Callable[[list[Outgoing]], None] | None = None

    # limbo ------------------------------------------------------------------------------

    def enter_limbo(self, link: UpstreamLink) -> None:
        """``link`` left rotation; when its stream still runs holding messages, the sockets
        it holds wait for it."""
        if not link.in_rotation and link.deliveries and link.streams.running:
            self.limbo.add(link.id)

    def leave_limbo(self, upstream_id: str) -> None:
        self.limbo.discard(upstream_id)

    def in_limbo(self, client_uuid: str) -> bool:
        """True while a link in limbo holds some of this socket's messages."""
        for upstream_id in self.limbo:
            link = self._links.get(upstream_id)
            if link is not None and link.deliveries.holds(client_uuid):
                return True
        return False

    # placing ----------------------------------------------------------------------------

    def _has_room_for_final(self, upstream_id: str) -> bool:
        link = self._links[upstream_id]
        return link.has_room() and link.deliveries.final is None

    def place(self, client_uuid: str) -> bool:
        """Place what waits to be delivered again for this socket, in order, as far as links
        take it; True when none waits any more."""
        waiting = self.redeliveries.waiting(client_uuid)
        pick, links, last = self._balancer.pick, self._links, self.max_deliveries
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

    def place_closed(self, client_uuid: str) -> None:
        """A closed socket's redeliveries: placed as far as links take them, the rest waits
        as an orphan."""
        if not self.place(client_uuid):
            self.orphans.add(client_uuid)

    def closed(self, client_uuid: str) -> None:
        """The socket closed: what still waits for it is an orphan's."""
        if client_uuid in self.redeliveries:
            self.orphans.add(client_uuid)

    def place_orphans(self) -> None:
        """Orphans' redeliveries, in order, until links are full again."""
        for client_uuid in list(self.orphans):
            if client_uuid in self._sessions:
                self.orphans.discard(client_uuid)  # open again: its session places them
            elif self.place(client_uuid):
                self.orphans.discard(client_uuid)
            else:
                return

    # what comes back --------------------------------------------------------------------

    def again(self, sent: list[Outgoing], queued: list[Outgoing]) -> list[str]:
        """Judge what a link gave back (exhausted and over budget: dropped, counted), keep
        the rest waiting; the sockets that now have messages waiting (none when it goes to
        the successor, or the pool closes)."""
        if self._successor is not None:  # the node lives on in another process: it delivers
            self._successor([*sent, *queued])
            return []
        if self._stopping:
            self._metrics.at_most_once.labels(AtMostOnce.NODE_STOPPING).inc(len(sent))
            if queued:
                self._metrics.drops.labels(DropReason.SOCKET_CLOSED).inc(len(queued))
            return []
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
            self._metrics.drops.labels(DropReason.REDELIVERY_EXHAUSTED).inc()
            log.warning(
                "socket %s: message %d dropped after %d deliveries without an acknowledgement "
                "(redelivery_exhausted)",
                item.client_uuid,
                item.seq,
                item.attempt,
            )
        if judged.over_budget:
            self._metrics.drops.labels(DropReason.RETRY_BUDGET).inc(len(judged.over_budget))
            log.warning(
                "%d messages not delivered again: the retry budget is spent (retry_budget)",
                len(judged.over_budget),
            )
        again = len(sent) - len(judged.exhausted) - len(judged.over_budget)
        if again:
            self.redelivered += again
            self._metrics.redeliveries.inc(again)
            for item in judged.again[:again]:
                self.answers.redelivered(item.client_uuid, item.seq)
        return self.redeliveries.add(judged.again, now=now)

    def resume(self, items: list[Outgoing]) -> list[str]:
        """Numbered messages kept waiting as they are (number and attempt); the sockets that
        now have messages waiting."""
        return self.redeliveries.add(items, now=time.monotonic())

    def take(self, client_uuids: Collection[str]) -> dict[str, list[Outgoing]]:
        """These sockets' numbered messages queued on links and waiting here, per socket, in
        number order."""
        taken: dict[str, list[Outgoing]] = {}
        for link in self._links.values():
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

    def hand_over(self, successor: Callable[[list[Outgoing]], None]) -> None:
        """What links give back from now on goes to ``successor``."""
        self._successor = successor

    def _first_deliveries(self) -> int:
        sent = sum(link.counts.sent for link in self._links.values())
        return sent - self.redelivered

    # hold_timeout -----------------------------------------------------------------------

    def arm_expiry(self) -> None:
        """The timer for the oldest redelivery's ``hold_timeout``, unless one is armed."""
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
            self._metrics.drops.labels(DropReason.HOLD_TIMEOUT).inc(len(expired))
            log.warning(
                "%d messages waited %.1fs to be delivered again and were dropped (hold_timeout)",
                len(expired),
                self.hold_timeout,
            )
            for item in expired:
                self.orphans.discard(item.client_uuid)
        self.arm_expiry()

    def stop(self) -> None:
        """The pool closes: what comes back from now on is counted, not placed again."""
        self._stopping = True

    def close(self) -> None:
        """The pool closed: the ``hold_timeout`` timer is cancelled."""
        if self._expiry is not None:
            self._expiry.cancel()

    def __repr__(self) -> str:
        return (
            f"<Redelivery waiting={len(self.redeliveries)} orphans={len(self.orphans)} "
            f"limbo={len(self.limbo)} redelivered={self.redelivered}>"
        )
