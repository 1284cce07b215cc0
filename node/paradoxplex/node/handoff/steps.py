"""The step sequence of a hot handoff, its time limits, and what a failure at each step leaves
behind; which sockets move. Plain code: no I/O, no clock.

The sequence (old: the running node, offering on ``--handoff-socket``; new: its successor,
started with ``--take-over``)::

    step      who  what                                                failure leaves
    hello     both new connects and says its terms; old checks them    old untouched
    prepare   new  its fleet state and upstream links (old serves on)  old untouched
    quiesce   old  stops accepting; admin requests and bus commands    old thaws
                   under way finish (clients see nothing yet)
    freeze    old  reads stop; replies are captured; the bus stops;    old thaws
                   its fleet writes are flushed, then stop; what can
                   be written or sent is, for at most FLUSH seconds
    transfer  old  listeners, sockets and their state, bus position    old thaws
    commit    new  the fleet names it; it says so                      old thaws
    release   old  lets go of every socket it sent: the point of no return
    resume    new  serves: sockets, listener, admin API, bus, heartbeat
    relay     old  forwards what its links still receive; drains the sockets it kept; exits 0

Rules:
- Before the old process has read ``Committed`` every failure (the new process dies, the
  connection drops, a step overruns its limit, a refusal) leaves the old process serving all
  it holds (``outcome``: ``UNTOUCHED`` before it froze, ``THAWED`` after). Once it has read
  ``Committed`` it lets go and the new process serves; the new one resumes only after
  ``Released``, so no socket is ever read or written by both.
- Each step has a time limit (``LIMITS``, seconds); clients see a pause from ``freeze`` to
  ``resume``.
- Sockets that talk move first (``talks``): the new process adopts them first.
- A socket moves (``disposition``) when it is plain TCP, open, and the old process wrote all
  it had for it (its transport's buffer cannot be exported); else the old process keeps it
  and drains it: TLS (a TLS session cannot leave its process), closing, unwritten bytes, or
  not frozen (its TLS handshake or PROXY header was still under way).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from paradoxplex.shared.errors import HandoffError


class Step(enum.Enum):
    HELLO = "hello"
    PREPARE = "prepare"
    QUIESCE = "quiesce"
    FREEZE = "freeze"
    TRANSFER = "transfer"
    COMMIT = "commit"
    RELEASE = "release"
    RESUME = "resume"
    RELAY = "relay"


ORDER = tuple(Step)
#: Once the old process reaches it, the new process serves.
NO_RETURN = Step.RELEASE

#: Seconds each step may take. ``prepare`` waits for the new process's upstream links (the old
#: one serves meanwhile); the others are the pause clients see, or bound it.
LIMITS: dict[Step, float] = {
    Step.HELLO: 5.0,
    Step.PREPARE: 30.0,
    Step.QUIESCE: 5.0,
    Step.FREEZE: 3.0,
    Step.TRANSFER: 10.0,
    Step.COMMIT: 5.0,
    Step.RELEASE: 5.0,
}
#: Seconds the freeze waits for writes and link queues to empty before it takes the rest.
FLUSH = 0.5
#: Seconds without a reply on the old process's links (and no socket kept) before it exits.
RELAY_QUIET = 1.0


class Outcome(enum.StrEnum):
    """Where a handoff left the old process (``paradoxplex_handoffs_total{outcome}``, with
    ``done`` counted by the new process and ``refused`` for a refusal at hello)."""

    UNTOUCHED = "untouched"
    THAWED = "thawed"
    HANDED_OVER = "handed_over"


#: Every ``paradoxplex_handoffs_total`` outcome, created at 0 when a node starts.
OUTCOMES = ("done", "refused", Outcome.UNTOUCHED.value, Outcome.THAWED.value)


def outcome(reached: Step) -> Outcome:
    """The old process's state when a handoff stops during ``reached`` (the last step it
    began)."""
    if ORDER.index(reached) >= ORDER.index(NO_RETURN):
        return Outcome.HANDED_OVER
    if ORDER.index(reached) >= ORDER.index(Step.QUIESCE):
        return Outcome.THAWED
    return Outcome.UNTOUCHED


class Disposition(enum.Enum):
    MOVE = "move"
    KEEP_TLS = "tls"
    KEEP_CLOSING = "closing"
    KEEP_UNWRITTEN = "unwritten"
    KEEP_NOT_FROZEN = "not frozen"


def disposition(*, frozen: bool, tls: bool, open: bool, unwritten: int) -> Disposition:
    """Whether a socket moves to the new process, or why the old one keeps it."""
    if tls:
        return Disposition.KEEP_TLS
    if not frozen:
        return Disposition.KEEP_NOT_FROZEN
    if not open:
        return Disposition.KEEP_CLOSING
    if unwritten:
        return Disposition.KEEP_UNWRITTEN
    return Disposition.MOVE


def talks(*, io: int, synced_io: int, holds: bool) -> bool:
    """Whether a moving socket goes first (it is adopted first, so that the sockets that talk
    see the shortest pause): it moved bytes since the last heartbeat (``io`` is its bytes in
    and out, ``synced_io`` the same as of then) or holds something to read or write."""
    return holds or io != synced_io


#: What each side waits for, per step: the bodies of ``handoff.Frame`` it accepts there.
OLD_EXPECTS: dict[Step, tuple[str, ...]] = {
    Step.HELLO: ("hello",),
    Step.PREPARE: ("ready", "refusal"),
    Step.COMMIT: ("committed", "refusal"),
}
NEW_EXPECTS: dict[Step, tuple[str, ...]] = {
    Step.HELLO: ("offer", "refusal"),
    Step.TRANSFER: ("listeners", "sessions", "bus", "done", "refusal"),
    Step.RELEASE: ("released", "refusal"),
}


def expect(step: Step, body: str | None, table: dict[Step, tuple[str, ...]]) -> None:
    """Raise ``HandoffError`` unless a frame with ``body`` may come during ``step``."""
    if body not in table.get(step, ()):
        raise HandoffError(step.value, f"unexpected {body or 'empty'} message")


@dataclass(frozen=True, slots=True)
class Pause:
    """What clients saw: the pause from the freeze to the resume, in seconds."""

    frozen_at: float
    resumed_at: float

    @property
    def seconds(self) -> float:
        return max(0.0, self.resumed_at - self.frozen_at)
