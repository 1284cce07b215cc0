"""One link's side of acknowledged delivery: what the upstream holds unacknowledged, the reply
numbers taken from it, and the at-most-once accounting of an upstream that does not
acknowledge.

Rules:
- Each stream says whether its upstream acknowledges (``opened(origin)``: the probe answer's
  origin; "" for an original-proto stream or an upstream without acknowledgements).
- Acknowledging upstream: every numbered message is kept from the moment its write starts
  (``sent``) until acknowledged (``ack``), within the bounds (``shared.unacked``); past them
  it is counted in ``paradoxplex_at_most_once_total{reason="link_bound"|"node_bound"}``.
  When the stream is gone, ``take_back`` gives the kept messages for redelivery.
- Replies of an acknowledging upstream are numbered; a number at or below the last one taken
  from the same origin is a copy (``fresh`` is False), counted
  ``paradoxplex_duplicates_suppressed_total{where="node"}``; so is a second answer to a
  message delivered again (``Answers``: the first upstream to answer it owns it). A new
  origin (the upstream restarted) starts the numbering over.
- Upstream without acknowledgements: per socket, messages written since its last reply
  (``sent`` after the write, ``replied``); when the stream is gone, those count as possibly
  lost (``reason="no_acks"``): exact for a request/reply upstream, an upper bound otherwise.
"""

from __future__ import annotations

from paradoxplex.node.links.queue import Outgoing
from paradoxplex.node.metrics import Metrics
from paradoxplex.shared.redelivery import Answers
from paradoxplex.shared.unacked import AtMostOnce, Unacked, UnackedLimits, UnackedTotals


class LinkDeliveries:
    """What one link's upstream holds, by delivery id (see the module's rules)."""

    __slots__ = (
        "acked",
        "answers",
        "in_flight",
        "metrics",
        "origin",
        "replies_upto",
        "unacked",
        "upstream_id",
    )

    def __init__(
        self,
        upstream_id: str,
        *,
        limits: UnackedLimits,
        totals: UnackedTotals,
        answers: Answers,
        metrics: Metrics,
    ) -> None:
        self.upstream_id = upstream_id
        self.unacked: Unacked[Outgoing] = Unacked(limits=limits, totals=totals)
        self.answers = answers
        self.metrics = metrics
        self.acked = False
        self.origin = ""
        self.replies_upto = 0
        self.in_flight: dict[str, int] = {}

    def opened(self, origin: str) -> None:
        """A stream opened; ``origin``: its upstream's, "" when it does not acknowledge."""
        self.acked = bool(origin)
        if origin != self.origin:
            self.origin = origin
            self.replies_upto = 0

    def sent(self, items: list[Outgoing]) -> None:
        """``items`` are being written (acknowledging upstream) or were written (else)."""
        if self.acked:
            unacked = self.unacked
            for item in items:
                bound = unacked.sent(item)
                if bound is not None:
                    self.metrics.at_most_once.labels(bound).inc()
            return
        in_flight = self.in_flight
        for item in items:
            if item.event is None:
                in_flight[item.client_uuid] = in_flight.get(item.client_uuid, 0) + 1

    def replied(self, client_uuid: str) -> None:
        """A reply to ``client_uuid`` came (upstream without acknowledgements)."""
        if self.in_flight:
            self.in_flight.pop(client_uuid, None)

    def ack(self, client_uuid: str, seq: int) -> None:
        self.unacked.ack(client_uuid, seq)

    def fresh(self, number: int) -> bool:
        """Whether reply ``number`` of this origin is new (then it is taken)."""
        if number <= self.replies_upto:
            self.metrics.duplicates.labels("node").inc()
            return False
        self.replies_upto = number
        return True

    def answers_first(self, client_uuid: str, cause_seq: int) -> bool:
        """Whether a reply caused by ``(client_uuid, cause_seq)`` is taken from this link."""
        if not self.answers or self.answers.accept(client_uuid, cause_seq, self.upstream_id):
            return True
        self.metrics.duplicates.labels("node").inc()
        return False

    def take_back(self) -> list[Outgoing]:
        """The stream is gone: what it held unacknowledged, to deliver again (the possibly
        lost ones of an upstream without acknowledgements are counted instead)."""
        if self.in_flight:
            lost = sum(self.in_flight.values())
            self.metrics.at_most_once.labels(AtMostOnce.NO_ACKS).inc(lost)
            self.in_flight = {}
        return self.unacked.take_all()

    def __len__(self) -> int:
        return len(self.unacked)

    def __bool__(self) -> bool:
        return bool(self.unacked)

    def __repr__(self) -> str:
        mode = "acked" if self.acked else "no acks"
        return (
            f"<LinkDeliveries {self.upstream_id} {mode} {self.unacked!r} "
            f"replies_upto={self.replies_upto} in_flight={len(self.in_flight)}>"
        )
