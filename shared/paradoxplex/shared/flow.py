"""One socket's flow control: when to read, what to do with a reply, which deadline is due.

No I/O and no clock: the session (the edge) passes ``now`` and executes what ``Flow`` decides.

Rules:
- Reading stops for four reasons that add up (``Pause``): an admin pause, backpressure (frames
  held that no upstream link took), pacing (frames held past this turn's allowance) and end
  of input (the client half-closed). It resumes only when none holds. A method that changes a
  reason returns ``Reading.PAUSE`` / ``Reading.RESUME`` when the transport must change, else
  None. Once closing, reading is left as it is.
- Pacing: ``allowance(now)`` is how many held frames may be placed now: at most
  ``frames_per_turn`` (0: no cap) in one loop turn, so that one socket's flood cannot keep the
  loop from other sockets, and at most the tokens of a ``rate`` bucket (frames per second per
  socket, holding one second's worth, at least 1; 0: off). Frames held past the allowance
  wait, reading paused: for the next turn (the pace deadline is ``now``) or for the next
  token. Nothing is dropped: the client is slowed down by TCP.
- Held frames have one owner, the ``Flow``: read frames are ``hold``-ed, the ones placed on a
  link leave from the front (``placed(n)``), the ones a link gave back return to the front in
  order (``requeue``), and a closing socket's are dropped (``drop_all``; the edge counts them).
- Write budget: a reply on an empty buffer is always written, however large (the kernel takes
  what it can). Otherwise, when the buffered bytes plus the reply would pass ``write_buffer``,
  the ``overflow`` policy applies: ``drop`` drops that reply, ``close`` drops it and closes the
  socket. A reply to a closing or closed socket is dropped. Every verdict but ``WRITE`` is a
  drop the edge counts under the verdict's ``reason``: no reply is lost uncounted.
- Deadlines (``next_deadline()``, then ``expired(now)``):
  - hold: frames still held after placing wait ``hold_timeout`` (then the socket closes);
    cleared as soon as none is held.
  - pace: frames held past the allowance are placed again (next turn, or next token).
  - idle: ``idle_timeout`` after the last byte either way (0: off).
  - linger: ``linger`` after the client half-closed (its end of input was read, or seen by a
    probe while reading was paused); replies are written meanwhile, then the socket closes.
  - probe: every ``probe_interval`` while reading is paused by an admin or by backpressure, the
    edge checks whether the client went away: a socket that is not read would never see its
    client's FIN or RST.
  - flush: ``flush_timeout`` after a close with bytes still buffered; then the edge aborts.
  While closing, only the flush deadline counts; once closed, none.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from paradoxplex.shared.config import OVERFLOW_POLICIES
from paradoxplex.shared.drops import DropReason


class Pause(enum.Flag):
    """Why reading is stopped; the reasons add up."""

    NONE = 0
    ADMIN = enum.auto()
    BACKPRESSURE = enum.auto()
    END_OF_INPUT = enum.auto()
    PACED = enum.auto()


class Reading(enum.Enum):
    """What the edge must do to its transport."""

    PAUSE = "pause"
    RESUME = "resume"


class FlowState(enum.Enum):
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class Deadline(enum.Enum):
    HOLD = "hold"
    PACE = "pace"
    IDLE = "idle"
    LINGER = "linger"
    PROBE = "probe"
    FLUSH = "flush"


@dataclass(frozen=True, slots=True)
class Write:
    """Write the reply."""


@dataclass(frozen=True, slots=True)
class Drop:
    """Drop the reply; count it under ``reason``."""

    reason: DropReason


@dataclass(frozen=True, slots=True)
class Close:
    """Drop the reply (count it under ``reason``) and abort the socket."""

    reason: DropReason


Verdict = Write | Drop | Close
WRITE = Write()
DROP_FULL = Drop(DropReason.WRITE_BUFFER_FULL)
DROP_CLOSED = Drop(DropReason.SOCKET_CLOSED)
# the node's max_buffered (``buffers``), not the flow's:
DROP_NODE_FULL = Drop(DropReason.NODE_BUFFER_FULL)
CLOSE_FULL = Close(DropReason.WRITE_BUFFER_FULL)
# The hot path (a read, a write) works on plain values: enum.Flag arithmetic costs ~0.6 µs and
# a class attribute lookup of an enum member ~0.1 µs on CPython 3.11.
OPEN, CLOSING, CLOSED = FlowState.OPEN, FlowState.CLOSING, FlowState.CLOSED
_ADMIN = Pause.ADMIN.value
_BACKPRESSURE = Pause.BACKPRESSURE.value
_END_OF_INPUT = Pause.END_OF_INPUT.value
_PACED = Pause.PACED.value
_PROBED = _ADMIN | _BACKPRESSURE | _PACED
_HELD = _BACKPRESSURE | _PACED
PAUSE_NAMES = (
    ("admin", _ADMIN),
    ("backpressure", _BACKPRESSURE),
    ("end_of_input", _END_OF_INPUT),
    ("paced", _PACED),
)
UNLIMITED = 1 << 62
NO_FRAMES: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class FlowLimits:
    """A socket's limits (defaults as the node's): ``write_buffer`` 1 MiB, ``overflow``
    ``close``, ``hold_timeout`` 30 s, ``idle_timeout`` 0 (off), ``linger`` 1 s,
    ``flush_timeout`` 5 s, ``probe_interval`` 0.5 s, ``frames_per_turn`` 0 (no cap; the node's
    is 256), ``rate`` 0 (off). Immutable: one object serves every socket of a node."""

    write_buffer: int = 1024 * 1024
    overflow: str = "close"
    hold_timeout: float = 30.0
    idle_timeout: float = 0.0
    linger: float = 1.0
    flush_timeout: float = 5.0
    probe_interval: float = 0.5
    frames_per_turn: int = 0
    turn: float = 0.0
    rate: float = 0.0
    per_turn: int = field(init=False, repr=False)  # frames_per_turn, 0 as UNLIMITED
    burst: float = field(init=False, repr=False)  # the rate bucket's size

    def __post_init__(self) -> None:
        if self.overflow not in OVERFLOW_POLICIES:
            raise ValueError(f"overflow must be one of {OVERFLOW_POLICIES}, not {self.overflow!r}")
        object.__setattr__(self, "per_turn", self.frames_per_turn or UNLIMITED)
        object.__setattr__(self, "burst", max(1.0, self.rate))


DEFAULT_LIMITS = FlowLimits()


class Flow:
    """A socket's read/write decisions and deadlines. Times are the edge's clock, in seconds.

    Its ``limits`` are shared, not copied, and nothing is allocated for held frames until
    there are some: an idle socket costs one small object (issue 14, RSS per socket).
    """

    __slots__ = (
        "_allowed",
        "_flush_at",
        "_held",
        "_hold_at",
        "_last_io",
        "_linger_at",
        "_pace_at",
        "_pause",
        "_peer_closed",
        "_probe_at",
        "_reading",
        "_tokens",
        "_tokens_at",
        "limits",
        "reason",
        "state",
    )

    def __init__(self, limits: FlowLimits = DEFAULT_LIMITS, *, now: float = 0.0) -> None:
        self.limits = limits
        self._tokens = limits.burst
        self._tokens_at = now
        self._allowed = UNLIMITED
        self._pace_at: float | None = None
        self.state = OPEN
        self.reason = ""
        self._held: list[bytes] | None = None  # None: none held
        self._pause = 0  # Pause values, as an int
        self._reading = True
        self._peer_closed = False
        self._last_io = now
        self._hold_at: float | None = None
        self._linger_at: float | None = None
        self._probe_at: float | None = None
        self._flush_at: float | None = None

    # held frames ------------------------------------------------------------------------

    @property
    def held(self) -> Sequence[bytes]:
        """The frames waiting for a link, oldest first (read-only: use the methods below)."""
        return self._held or NO_FRAMES

    def hold(self, frames: Iterable[bytes]) -> None:
        """Frames just read, after those already held."""
        if self._held is None:
            self._held = list(frames)
        else:
            self._held.extend(frames)

    def allowance(self, now: float) -> int:
        """How many held frames may be placed now (this turn's cap, the rate's tokens)."""
        limits = self.limits
        allowed = limits.per_turn
        if limits.rate:
            tokens = min(limits.burst, self._tokens + (now - self._tokens_at) * limits.rate)
            self._tokens, self._tokens_at = tokens, now
            allowed = min(allowed, int(tokens))
        self._allowed = allowed
        return allowed

    def placed(self, count: int, now: float) -> Reading | None:
        """The first ``count`` held frames went to links; the rest (if any) waits for its
        turn or a token when the allowance stopped it, else for a link (backpressure)."""
        held = self._held
        if held is not None:
            del held[:count]
        if self.limits.rate:
            self._tokens -= count
        allowed, self._allowed = self._allowed, UNLIMITED
        if held:
            if count >= allowed:
                self._pace(now)
            else:
                self._pause = self._pause & ~_PACED | _BACKPRESSURE
                self._pace_at = None
                if self._hold_at is None and self.state is OPEN:
                    self._hold_at = now + self.limits.hold_timeout
            return self._reading_change(now)
        self._held = None  # an idle socket keeps no list
        if not self._pause & _HELD:
            return None  # nothing held before or after: the common case
        self._pause &= ~_HELD
        self._hold_at = self._pace_at = None
        return self._reading_change(now)

    def _pace(self, now: float) -> None:
        self._pause = self._pause & ~_BACKPRESSURE | _PACED
        self._hold_at = None
        limits = self.limits
        if limits.rate and self._tokens < 1.0:
            self._pace_at = now + (1.0 - self._tokens) / limits.rate
        else:
            self._pace_at = now + limits.turn

    @property
    def waiting_for_rate(self) -> bool:
        """Frames wait for the rate's next token (not only for the next turn)."""
        return bool(self._pause & _PACED) and bool(self.limits.rate) and self._tokens < 1.0

    def requeue(self, frames: Sequence[bytes]) -> None:
        """Frames a link gave back go before those held, in their order."""
        if self._held is None:
            self._held = list(frames)
        else:
            self._held[:0] = frames

    def drop_all(self) -> int:
        """Forget every held frame; the count is for the edge to report."""
        count = len(self._held or NO_FRAMES)
        self._held = None
        self._hold_at = self._pace_at = None
        return count

    # reading ----------------------------------------------------------------------------

    @property
    def paused(self) -> Pause:
        return Pause(self._pause)

    @property
    def reading(self) -> bool:
        """Whether the transport is reading (as far as this object told it)."""
        return self._reading

    def set_paused(self, paused: bool, now: float) -> Reading | None:
        """An admin pause (True) or resume (False)."""
        if paused:
            self._pause |= _ADMIN
        else:
            self._pause &= ~_ADMIN
        return self._reading_change(now)

    def end_of_input(self, now: float) -> Reading | None:
        """The client half-closed: stop reading, linger, then close."""
        self._pause |= _END_OF_INPUT
        self._arm_linger(now)
        return self._reading_change(now)

    def peer_closed(self, now: float) -> None:
        """A probe saw the client's FIN while reading was paused: linger, then close. What it
        sent before is read if reading resumes meanwhile."""
        self._peer_closed = True
        self._probe_at = None
        self._arm_linger(now)

    def _arm_linger(self, now: float) -> None:
        if self._linger_at is None:
            self._linger_at = now + self.limits.linger

    def _reading_change(self, now: float) -> Reading | None:
        if self.state is not OPEN:
            return None
        probe = bool(self._pause & _PROBED) and not self._peer_closed
        if not probe:
            self._probe_at = None
        elif self._probe_at is None:
            self._probe_at = now + self.limits.probe_interval
        want = not self._pause
        if want == self._reading:
            return None
        self._reading = want
        return Reading.RESUME if want else Reading.PAUSE

    # writing ----------------------------------------------------------------------------

    def touch(self, now: float) -> None:
        """A byte went either way: the idle deadline moves."""
        self._last_io = now

    def write(self, buffered: int, size: int) -> Verdict:
        """What to do with a reply of ``size`` bytes when ``buffered`` bytes wait to be sent."""
        if self.state is not OPEN:
            return DROP_CLOSED
        if not buffered or buffered + size <= self.limits.write_buffer:
            return WRITE
        if self.limits.overflow == "drop":
            return DROP_FULL
        self.abort("write buffer full")
        return CLOSE_FULL

    # closing ----------------------------------------------------------------------------

    def close(self, reason: str, *, buffered: int, now: float) -> bool:
        """Start closing after ``buffered`` bytes are written; False when already closing."""
        if self.state is not OPEN:
            return False
        self._closing(reason)
        if buffered:
            self._flush_at = now + self.limits.flush_timeout
        return True

    def abort(self, reason: str) -> None:
        """Close at once; the first reason given stays."""
        if self.state is OPEN:
            self._closing(reason)
        self.reason = self.reason or reason

    def lost(self, *, error: bool) -> None:
        """The transport is gone (``error``: by a connection error rather than a close)."""
        if not self.reason:
            self.reason = "connection error" if error else "client closed"
        self.state = CLOSED
        self._flush_at = None

    def _closing(self, reason: str) -> None:
        self.state = CLOSING
        self.reason = reason
        self._hold_at = self._linger_at = self._probe_at = self._pace_at = None

    # deadlines --------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """The earliest time ``expired`` may report something; None: no deadline is armed."""
        if self.state is CLOSING:
            return self._flush_at
        if self.state is CLOSED:
            return None
        idle_timeout = self.limits.idle_timeout
        idle = self._last_io + idle_timeout if idle_timeout > 0 else None
        times = (self._hold_at, self._pace_at, self._linger_at, self._probe_at, idle)
        armed = [t for t in times if t is not None]
        return min(armed, default=None)

    def expired(self, now: float) -> list[Deadline]:
        """The deadlines due at ``now``, in the order to act on them; each is reported once
        (the probe re-arms itself while reading stays paused)."""
        if self.state is CLOSING:
            if self._flush_at is not None and now >= self._flush_at:
                self._flush_at = None
                return [Deadline.FLUSH]
            return []
        if self.state is CLOSED:
            return []
        due: list[Deadline] = []
        if self._hold_at is not None and now >= self._hold_at:
            self._hold_at = None
            due.append(Deadline.HOLD)
        if self._pace_at is not None and now >= self._pace_at:
            self._pace_at = None
            due.append(Deadline.PACE)
        idle_timeout = self.limits.idle_timeout
        if idle_timeout > 0 and now - self._last_io >= idle_timeout:
            due.append(Deadline.IDLE)
        if self._linger_at is not None and now >= self._linger_at:
            self._linger_at = None
            due.append(Deadline.LINGER)
        if self._probe_at is not None and now >= self._probe_at:
            self._probe_at = now + self.limits.probe_interval
            due.append(Deadline.PROBE)
        return due

    def __repr__(self) -> str:
        reasons = "|".join(name for name, bit in PAUSE_NAMES if bit & self._pause)
        reading = "reading" if self._reading else f"paused={reasons}"
        reason = f" reason={self.reason!r}" if self.reason else ""
        return f"<Flow {self.state.value} {reading} held={len(self.held)}{reason}>"
