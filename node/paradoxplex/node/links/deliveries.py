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
  from the same origin (``replies_upto``, kept by the stream's reader) is a copy, counted
  ``paradoxplex_duplicates_suppressed_total{where="node"}``; so is a second answer to a
  message delivered again (``Answers``: the first upstream to answer it owns it). A new
  origin (the upstream restarted) starts the numbering over.
- A message on its last delivery (``attempt`` = max deliveries) goes to a link alone: a link
  carries at most one such message at a time (``final``, from its placing until it is
  acknowledged or taken back; ``on_free`` says when the link can take the next). So when a
  poison message crashes upstream after upstream, the messages that happened to be in flight
  with it are not exhausted with it: at its last delivery it is the only one of its kind.
- Upstream without acknowledgements: per socket, messages written since its last reply
  (``sent`` after the write, ``replied``); when the stream is gone, those count as possibly
  lost (``reason="no_acks"``): exact for a request/reply upstream, an upper bound otherwise.
"""

from __future__ import annotations

from collections.abc import Callable

from paradoxplex.node.links.queue import Outgoing
from paradoxplex.node.metrics import Metrics
from paradoxplex.shared.redelivery import Answers
from paradoxplex.shared.unacked import AtMostOnce, Unacked, UnackedLimits, UnackedTotals


class LinkDeliveries:
    """What one link's upstream holds, by delivery id (see the module's rules)."""

    __slots__ = (
        "_on_free",
        "acked",
        "answers",
        "final",
        "final_sent",
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
        on_free: Callable[[], None] = lambda: None,
    ) -> None:
        self.upstream_id = upstream_id
        self.final: Outgoing | None = None
        self.final_sent = False
        self._on_free = on_free
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
            for bound in self.unacked.sent_all(items):
                self.metrics.at_most_once.labels(bound).inc()
            if self.final is not None and not self.final_sent:
                self.final_sent = any(item is self.final for item in items)
            return
        in_flight = self.in_flight
        for item in items:
            if item.event is None:
                in_flight[item.client_uuid] = in_flight.get(item.client_uuid, 0) + 1

    def replied(self, client_uuid: str) -> None:
        """A reply to ``client_uuid`` came (upstream without acknowledgements)."""
        if self.in_flight:
            self.in_flight.pop(client_uuid, None)

    def holds(self, client_uuid: str) -> bool:
        return self.unacked.holds(client_uuid)

    def ack(self, client_uuid: str, seq: int) -> None:
        self.unacked.ack(client_uuid, seq)
        if self.final is not None:
            self.check_final(client_uuid)

    def check_final(self, client_uuid: str) -> None:
        """After an ack of ``client_uuid``: is the link's last-delivery message done?"""
        final = self.final
        if (
            final is not None
            and self.final_sent
            and final.client_uuid == client_uuid
            and not self.unacked.holds(client_uuid, final.seq)
        ):
            self.forget_final()
            self._on_free()

    def take_final(self, item: Outgoing) -> None:
        """``item``, on its last delivery, is placed on this link (see the rules)."""
        self.final, self.final_sent = item, False

    def forget_final(self) -> None:
        self.final, self.final_sent = None, False

    def answers_first(self, client_uuid: str, cause_seq: int) -> bool:
        """Whether a reply caused by ``(client_uuid, cause_seq)`` is taken from this link."""
        if not self.answers or self.answers.accept(client_uuid, cause_seq, self.upstream_id):
            return True
        self.metrics.duplicates.labels("node").inc()
        return False

    def take_back(self) -> list[Outgoing]:
        """The stream is gone: what it held unacknowledged, to deliver again (the possibly
        lost ones of an upstream without acknowledgements are counted instead)."""
        self.forget_final()
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
