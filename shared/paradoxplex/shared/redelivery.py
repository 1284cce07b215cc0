"""Delivering again what an upstream held unacknowledged when its link broke or ended.

Rules:
- ``judge`` decides each message taken back from a link: one that had been sent (``sent``) is
  delivered again with its attempt + 1, unless it has been delivered ``max_deliveries`` times
  already (``exhausted``: dropped, counted ``redelivery_exhausted``, one log line naming the
  socket) or the retry budget is spent (``over_budget``: dropped, counted
  ``retry_budget``); one that was only queued (never written) goes again as it is, free.
- ``RetryBudget`` is a token bucket per node, as gRPC's retry throttling (A6): it holds at
  most ``burst`` tokens (by default 4,096, one link's worth of unacknowledged messages), earns
  ``ratio`` of a token (0.1) per first delivery sent and ``floor`` tokens per second (10), and
  each redelivery spends one. A sick fleet (upstreams crashing on what they are given) thus
  redelivers at most a tenth of the normal rate, plus the floor, once the burst is spent.
- ``Redeliveries`` holds what waits to be placed again, per socket in number order, with the
  time it started waiting. A socket's later messages are placed only once its redeliveries
  are (the pool's rule), so with sticky routing its order holds across a redelivery. What
  waits longer than the node's ``hold_timeout`` is dropped (``expired``). It counts in the
  node's unacknowledged totals.
- ``Answers`` remembers the delivery ids sent again (at most ``limit``, 65,536, the oldest
  forgotten first) and which upstream answered each first: a reply carrying such an id as
  its cause from another upstream is a second answer (the first upstream was cut off, not
  dead) and is dropped.
No I/O, no clock: ``now`` is a parameter.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from paradoxplex.shared.unacked import DEFAULT_LINK_MESSAGES, UnackedTotals

DEFAULT_MAX_DELIVERIES = 3
DEFAULT_BUDGET_RATIO = 0.1
BUDGET_FLOOR = 10.0
ANSWERS_LIMIT = 65_536


class Delivery(Protocol):
    """A message that can be delivered again: its id, payload and attempt."""

    client_uuid: str
    seq: int
    payload: bytes
    attempt: int


D = TypeVar("D", bound=Delivery)


class RetryBudget:
    """The node's token bucket for redeliveries (see the module's rules)."""

    __slots__ = ("_at", "_earned_from", "burst", "floor", "ratio", "tokens")

    def __init__(
        self,
        *,
        ratio: float = DEFAULT_BUDGET_RATIO,
        floor: float = BUDGET_FLOOR,
        burst: float = DEFAULT_LINK_MESSAGES,
        now: float = 0.0,
    ) -> None:
        if ratio < 0 or floor < 0 or burst < 1:
            raise ValueError("a retry budget needs ratio >= 0, floor >= 0 and burst >= 1")
        self.ratio = ratio
        self.floor = floor
        self.burst = float(burst)
        self.tokens = float(burst)
        self._at = now
        self._earned_from = 0

    def spend(self, *, now: float, first_deliveries: int) -> bool:
        """One redelivery, if a token is left; ``first_deliveries``: the node's count so far
        of messages sent for the first time (what the budget earns from)."""
        earned = (first_deliveries - self._earned_from) * self.ratio
        earned += max(0.0, now - self._at) * self.floor
        self.tokens = min(self.burst, self.tokens + earned)
        self._earned_from, self._at = first_deliveries, now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True

    def __repr__(self) -> str:
        return f"<RetryBudget {self.tokens:.1f}/{self.burst:g} ratio={self.ratio:g}>"


@dataclass(slots=True)
class Judged(Generic[D]):
    """What becomes of the messages taken back from a link."""

    again: list[D] = field(default_factory=list)
    exhausted: list[D] = field(default_factory=list)
    over_budget: list[D] = field(default_factory=list)


def judge(
    sent: Iterable[D],
    queued: Iterable[D],
    *,
    max_deliveries: int,
    budget: RetryBudget,
    now: float,
    first_deliveries: int,
) -> Judged[D]:
    """Sent messages go again with attempt + 1 (or are exhausted, or over budget); queued
    ones go again as they are."""
    judged: Judged[D] = Judged()
    for item in sent:
        if item.attempt >= max_deliveries:
            judged.exhausted.append(item)
        elif not budget.spend(now=now, first_deliveries=first_deliveries):
            judged.over_budget.append(item)
        else:
            item.attempt += 1
            judged.again.append(item)
    judged.again.extend(queued)
    return judged


class Redeliveries(Generic[D]):
    """Messages waiting to be placed again, per socket in number order (see the rules)."""

    __slots__ = ("_by_socket", "_since", "bytes", "totals")

    def __init__(self, totals: UnackedTotals) -> None:
        self.totals = totals
        self._by_socket: dict[str, list[D]] = {}
        self._since: dict[str, float] = {}
        self.bytes = 0

    def __len__(self) -> int:
        return sum(len(items) for items in self._by_socket.values())

    def __bool__(self) -> bool:
        return bool(self._by_socket)

    def __contains__(self, client_uuid: object) -> bool:
        return client_uuid in self._by_socket

    def add(self, items: Iterable[D], *, now: float) -> list[str]:
        """Messages to place again; the sockets they belong to."""
        grouped: dict[str, list[D]] = {}
        for item in items:
            grouped.setdefault(item.client_uuid, []).append(item)
        for client_uuid, more in grouped.items():
            waiting = self._by_socket.get(client_uuid)
            if waiting is None:
                self._by_socket[client_uuid] = sorted(more, key=_seq)
                self._since[client_uuid] = now
            else:
                waiting.extend(more)
                waiting.sort(key=_seq)
            size = sum(len(item.payload) for item in more)
            self.bytes += size
            self.totals.add(len(more), size)
        return list(grouped)

    def waiting(self, client_uuid: str) -> Sequence[D]:
        """This socket's messages waiting, in number order (read-only)."""
        return self._by_socket.get(client_uuid, ())

    def placed(self, client_uuid: str, count: int) -> None:
        """The first ``count`` of this socket's waiting messages were placed on links."""
        waiting = self._by_socket.get(client_uuid)
        if not waiting or count <= 0:
            return
        size = sum(len(item.payload) for item in waiting[:count])
        self.bytes -= size
        self.totals.add(-min(count, len(waiting)), -size)
        if count >= len(waiting):
            del self._by_socket[client_uuid]
            del self._since[client_uuid]
        else:
            del waiting[:count]

    def expired(self, *, now: float, timeout: float) -> list[D]:
        """Take every socket's messages that have waited ``timeout`` seconds or more."""
        old = [s for s, since in self._since.items() if now - since >= timeout]
        items: list[D] = []
        for client_uuid in old:
            waiting = self._by_socket[client_uuid]
            self.placed(client_uuid, len(waiting))
            items.extend(waiting)
        return items

    def next_expiry(self, timeout: float) -> float | None:
        """When the longest waiting socket's messages expire (None: nothing waits)."""
        if not self._since:
            return None
        return min(self._since.values()) + timeout

    def __repr__(self) -> str:
        return f"<Redeliveries sockets={len(self._by_socket)} messages={len(self)}>"


def _seq(item: Delivery) -> int:
    return item.seq


class Answers:
    """Delivery ids sent again, and the upstream that answered each first (see the rules)."""

    __slots__ = ("answered", "limit")

    def __init__(self, limit: int = ANSWERS_LIMIT) -> None:
        self.limit = limit
        #: delivery id -> the upstream that answered it first ("" until one did)
        self.answered: OrderedDict[tuple[str, int], str] = OrderedDict()

    def __len__(self) -> int:
        return len(self.answered)

    def __bool__(self) -> bool:
        return bool(self.answered)

    def redelivered(self, client_uuid: str, seq: int) -> None:
        """This delivery id goes out again: the first upstream to answer it owns it."""
        key = (client_uuid, seq)
        if key in self.answered:
            return
        self.answered[key] = ""
        if len(self.answered) > self.limit:
            self.answered.popitem(last=False)

    def accept(self, client_uuid: str, seq: int, upstream_id: str) -> bool:
        """Whether a reply caused by ``(client_uuid, seq)`` from ``upstream_id`` is taken:
        yes unless another upstream answered that redelivered message first."""
        key = (client_uuid, seq)
        owner = self.answered.get(key)
        if owner is None:
            return True
        if not owner:
            self.answered[key] = upstream_id
            return True
        return owner == upstream_id

    def __repr__(self) -> str:
        return f"<Answers {len(self.answered)}/{self.limit}>"
