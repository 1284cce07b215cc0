"""Exactly once, in order, per sender: what a receiver does with each numbered envelope.

Every envelope a sender puts on a stream carries the sender's ``epoch`` (new at every process
start), a ``seq`` (1, 2, 3, ... per sender and stream, assigned once: a retried write carries
the same one) and ``total``, how many messages the sender has put on that stream up to and
including this envelope (an envelope may carry many replies). A ``tail`` marker repeats the
last ``seq`` and ``total`` without carrying anything, so that a loss at the end of a burst is
noticed too.

Rules (``Order.accept``):
- the next ``seq`` of a known epoch: ``Apply``;
- a ``seq`` already seen (a retried write that had landed, a replay): ``Duplicate``, dropped;
- a ``seq`` further ahead: ``Gap(missing, lost)``: apply it, and count the ``missing``
  envelopes and ``lost`` messages in between, which will never come;
- an older epoch than the one known: ``Duplicate`` (a dead incarnation's leftovers);
- a new epoch: its first envelope is the baseline, unless that sender started after this
  receiver (``epoch_started(epoch) > since``): then everything from seq 1 should have been
  read here, and what is missing before it is a gap.
``Order.tail`` answers a ``Gap`` when envelopes before the marker never arrived, else None.
``Order.positions`` and ``Order.resumed`` carry a receiver's positions to its successor (a hot
handoff): the successor goes on exactly where this one stopped, so what was applied here is a
``Duplicate`` there and what comes next is an ``Apply``.
No I/O, no clock: ``since`` and epochs are milliseconds chosen by the caller.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = [
    "EPOCH_BITS",
    "Apply",
    "Duplicate",
    "Gap",
    "Order",
    "Position",
    "Verdict",
    "epoch_started",
    "new_epoch",
]

#: Random low bits of an epoch; the high bits are its start time in milliseconds.
EPOCH_BITS = 20


@dataclass(frozen=True, slots=True)
class Apply:
    """The next envelope in order: apply it."""


@dataclass(frozen=True, slots=True)
class Duplicate:
    """Seen before: drop it."""


@dataclass(frozen=True, slots=True)
class Gap:
    """Apply it, but ``missing`` envelopes (``lost`` messages) before it never arrived."""

    missing: int
    lost: int


Verdict = Apply | Duplicate | Gap

APPLY = Apply()
DUPLICATE = Duplicate()


def new_epoch(started_ms: int, *, rng: random.Random | None = None) -> int:
    """An epoch for a process that started at ``started_ms`` (random low bits)."""
    low = (rng or random).getrandbits(EPOCH_BITS)
    return (started_ms << EPOCH_BITS) | low


def epoch_started(epoch: int) -> int:
    """The start time, in milliseconds, an epoch was made from."""
    return epoch >> EPOCH_BITS


@dataclass(frozen=True, slots=True)
class Position:
    """Where one sender stood on one stream: its epoch, last ``seq`` and ``total``."""

    sender: str
    epoch: int
    seq: int
    total: int


@dataclass(slots=True)
class _Track:
    epoch: int
    seq: int
    total: int


class Order:
    """Per-sender positions on one stream. ``since``: when this receiver began reading (ms)."""

    def __init__(self, *, since: int = 0) -> None:
        self.since = since
        self._tracks: dict[str, _Track] = {}

    def accept(self, sender: str, epoch: int, seq: int, total: int, count: int = 1) -> Verdict:
        """The verdict on envelope ``seq`` carrying ``count`` messages; applied ones move on."""
        track = self._tracks.get(sender)
        if track is None or epoch > track.epoch:
            return self._first(sender, epoch, seq, total, count)
        if epoch < track.epoch or seq <= track.seq:
            return DUPLICATE
        verdict = self._advance(track, seq, total - count)
        track.total = total
        return verdict

    def positions(self) -> list[Position]:
        """Every sender's position, for a successor (``resumed``)."""
        return [Position(s, t.epoch, t.seq, t.total) for s, t in sorted(self._tracks.items())]

    @classmethod
    def resumed(cls, positions: list[Position], *, since: int) -> Order:
        """An ``Order`` that goes on from ``positions`` (another receiver's, of the same
        stream) and began reading at ``since``."""
        order = cls(since=since)
        for position in positions:
            order._tracks[position.sender] = _Track(position.epoch, position.seq, position.total)
        return order

    def tail(self, sender: str, epoch: int, seq: int, total: int) -> Gap | None:
        """A marker: ``seq`` envelopes and ``total`` messages were sent. A Gap when some of
        them never arrived (and will not: the position moves past them)."""
        track = self._tracks.get(sender)
        if track is None or epoch > track.epoch:
            if epoch_started(epoch) <= self.since:
                self._tracks[sender] = _Track(epoch, seq, total)
                return None
            track = self._tracks[sender] = _Track(epoch, 0, 0)
        if epoch < track.epoch or seq <= track.seq:
            return None
        verdict = self._advance(track, seq + 1, total)
        track.seq, track.total = seq, total
        return verdict if isinstance(verdict, Gap) else None

    def _first(self, sender: str, epoch: int, seq: int, total: int, count: int) -> Verdict:
        self._tracks[sender] = track = _Track(epoch, 0, 0)
        if epoch_started(epoch) <= self.since:
            track.seq, track.total = seq, total
            return APPLY
        verdict = self._advance(track, seq, total - count)
        track.total = total
        return verdict

    @staticmethod
    def _advance(track: _Track, seq: int, total_before: int) -> Verdict:
        """Move to ``seq``; what lay between the last position and it is a gap."""
        missing = seq - track.seq - 1
        lost = max(total_before - track.total, missing)
        track.seq = seq
        return APPLY if missing == 0 else Gap(missing, lost)

    def __repr__(self) -> str:
        return f"<Order senders={len(self._tracks)} since={self.since}>"
