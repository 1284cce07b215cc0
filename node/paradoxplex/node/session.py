"""One downstream socket: an ``asyncio.Protocol`` that frames reads and writes replies.

Limits (keyword arguments of ``SessionLimits``, set from the node's config):
- ``max_frame``: a larger frame closes the socket (reason ``frame too large``).
- ``write_buffer``: bytes buffered for a slow reader; past it the ``overflow`` policy applies:
  ``close`` (default) closes the socket, ``drop`` drops that reply. Either is counted.
- ``hold_timeout``: read frames that no upstream could take wait this long, reading paused,
  before the socket is closed (reason ``no upstream took its data``).
- ``idle_timeout``: no byte either way for this long closes the socket (0: off).
- ``linger``: after the client half-closes, replies are still written for this long
  (default 1 s: a client that closed for good looks the same, and must leave the fleet's
  socket list within 2 s).
Reading stops for three reasons that add up: an admin pause, backpressure (frames held), and
end of input. It resumes only when none holds.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Protocol, cast

from paradoxplex.node.metrics import Metrics
from paradoxplex.shared.errors import FrameTooLarge
from paradoxplex.shared.framing import Framer, make_framer
from paradoxplex.shared.sessions import SessionInfo, SessionState

log = logging.getLogger("paradoxplex.node.session")

CLOSE_FLUSH = 5.0


@dataclass(frozen=True, slots=True)
class SessionLimits:
    framing: str = "raw"
    max_frame: int = 1024 * 1024
    write_buffer: int = 1024 * 1024
    overflow: str = "close"
    hold_timeout: float = 30.0
    idle_timeout: float = 0.0
    linger: float = 1.0


class SessionHost(Protocol):
    """What a session needs from its node."""

    metrics: Metrics

    def open_session(self, session: Session) -> SessionInfo | None:
        """Register a new socket; None refuses it (max_connections)."""

    def close_session(self, session: Session, reason: str) -> None: ...

    def submit(self, session: Session) -> None:
        """Place the session's held frames on upstream links, as many as fit."""

    def upstream_ready(self) -> bool: ...


class Session(asyncio.Protocol):
    """A socket's I/O; the decisions are the framer's, the balancer's and the router's."""

    __slots__ = (
        "_backpressured",
        "_eof",
        "_hold_timer",
        "_idle_timer",
        "_last_io",
        "_linger_timer",
        "_loop",
        "_paused_by_admin",
        "_reading",
        "close_reason",
        "closing",
        "framer",
        "held",
        "host",
        "info",
        "limits",
        "synced_io",
        "traffic",
        "transport",
    )

    def __init__(self, host: SessionHost, limits: SessionLimits) -> None:
        self.host = host
        self.traffic = host.metrics.traffic
        self.limits = limits
        self.framer: Framer = make_framer(limits.framing, max_frame=limits.max_frame)
        self.held: list[bytes] = []
        self.info: SessionInfo | None = None
        self.transport: asyncio.Transport | None = None
        self.closing = False
        self.close_reason = ""
        self.synced_io = 0
        self._paused_by_admin = False
        self._backpressured = False
        self._eof = False
        self._reading = True
        self._last_io = 0.0
        self._hold_timer: asyncio.TimerHandle | None = None
        self._idle_timer: asyncio.TimerHandle | None = None
        self._linger_timer: asyncio.TimerHandle | None = None

    @property
    def uuid(self) -> str:
        return self.info.uuid if self.info else ""

    # asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one
        self.transport = cast(asyncio.Transport, transport)
        self._loop = asyncio.get_running_loop()  # each call costs a getpid() system call
        self.info = self.host.open_session(self)
        if self.info is None:
            self.closing = True
            self.transport.abort()
            return
        if self.limits.idle_timeout > 0:
            self._last_io = self._loop.time()
            self._arm_idle()

    def data_received(self, data: bytes) -> None:
        info = self.info
        if info is None or self.closing:
            return
        info.bytes_in += len(data)
        traffic = self.traffic
        traffic.bytes_in += len(data)
        if self.limits.idle_timeout:
            self._last_io = self._loop.time()
        try:
            frames = self.framer.feed(data)
        except FrameTooLarge as error:
            self.host.metrics.bad_input.labels("frame_too_large").inc()
            log.warning("socket %s: %s; closing it", info.uuid, error)
            self.close("frame too large")
            return
        if not frames:
            return
        info.messages_in += len(frames)
        traffic.messages_in += len(frames)
        self.held.extend(frames)
        self.host.submit(self)

    def eof_received(self) -> bool:
        """The client half-closed: keep writing replies for ``linger`` seconds, then close."""
        self._eof = True
        self._update_reading()
        if self._linger_timer is None:
            loop = self._loop
            self._linger_timer = loop.call_later(self.limits.linger, self.close, "client closed")
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._hold_timer, self._idle_timer, self._linger_timer):
            if timer is not None:
                timer.cancel()
        if self.info is None:
            return
        if not self.close_reason:
            self.close_reason = "client closed" if exc is None else "connection error"
        self.closing = True
        self.host.close_session(self, self.close_reason)

    # writes -----------------------------------------------------------------------------

    def write(self, payload: bytes) -> bool:
        """Write a reply unchanged; False when it was not written (closing or overflow)."""
        transport, info = self.transport, self.info
        if transport is None or info is None or self.closing:
            return False
        # The limit bounds a slow reader's backlog: a reply on an empty buffer is always
        # written (the kernel takes what it can), however large.
        buffered = transport.get_write_buffer_size()
        if buffered and buffered + len(payload) > self.limits.write_buffer:
            return self._overflow(len(payload))
        transport.write(payload)
        info.bytes_out += len(payload)
        info.messages_out += 1
        traffic = self.traffic
        traffic.bytes_out += len(payload)
        traffic.messages_out += 1
        if self.limits.idle_timeout:
            self._last_io = self._loop.time()
        return True

    def _overflow(self, size: int) -> bool:
        self.host.metrics.drops.labels("write_buffer_full").inc()
        if self.limits.overflow == "drop":
            log.debug("socket %s: write buffer full, reply of %d bytes dropped", self.uuid, size)
            return False
        log.warning(
            "socket %s: write buffer over %d bytes; closing it", self.uuid, self.limits.write_buffer
        )
        self.abort("write buffer full")
        return False

    # flow control -----------------------------------------------------------------------

    def settle(self) -> None:
        """The host placed what it could: pause reading while frames are held, else resume."""
        if self.held:
            self._hold()
            return
        if self._backpressured:
            self._backpressured = False
            if self._hold_timer is not None:
                self._hold_timer.cancel()
                self._hold_timer = None
            self._update_reading()

    def _hold(self) -> None:
        self._backpressured = True
        self._update_reading()
        if self._hold_timer is None and not self.closing:
            loop = self._loop
            self._hold_timer = loop.call_later(self.limits.hold_timeout, self._hold_expired)

    def _hold_expired(self) -> None:
        self._hold_timer = None
        if not self.held or self.closing:
            return
        reason = "upstreams full" if self.host.upstream_ready() else "no upstream ready"
        self.host.metrics.drops.labels("hold_timeout").inc(len(self.held))
        log.warning(
            "socket %s: %d frames waited %.1fs (%s); closing it",
            self.uuid,
            len(self.held),
            self.limits.hold_timeout,
            reason,
        )
        self.held.clear()
        self.close(f"no upstream took its data: {reason}")

    def set_paused(self, paused: bool) -> None:
        """Admin pause/resume: a paused socket is not read and is not *active*."""
        self._paused_by_admin = paused
        if self.info is not None:
            self.info.state = SessionState.PAUSED if paused else SessionState.ACTIVE
        self._update_reading()

    def _update_reading(self) -> None:
        transport = self.transport
        if transport is None or self.closing:
            return
        want = not (self._paused_by_admin or self._backpressured or self._eof)
        if want == self._reading:
            return
        self._reading = want
        if want:
            transport.resume_reading()
        else:
            transport.pause_reading()

    # timers and close -------------------------------------------------------------------

    def _arm_idle(self) -> None:
        loop = self._loop
        deadline = self._last_io + self.limits.idle_timeout
        self._idle_timer = loop.call_at(deadline, self._idle_check)

    def _idle_check(self) -> None:
        if self.closing:
            return
        if self._loop.time() - self._last_io >= self.limits.idle_timeout:
            self.close("idle timeout")
        else:
            self._arm_idle()

    def close(self, reason: str) -> None:
        """Close the socket after writing what is buffered (at most ``CLOSE_FLUSH`` seconds:
        a peer that does not read is then aborted); ``reason`` goes to logs and metrics."""
        if self.closing or self.transport is None:
            return
        self.closing = True
        self.close_reason = reason
        self.transport.close()
        if self.transport.get_write_buffer_size():
            loop = self._loop
            self._linger_timer = loop.call_later(CLOSE_FLUSH, self.abort, reason)

    def abort(self, reason: str) -> None:
        if self.transport is None:
            return
        self.close_reason = self.close_reason or reason
        self.closing = True
        self.transport.abort()

    def __repr__(self) -> str:
        state = "closing" if self.closing else ("paused" if self._paused_by_admin else "open")
        return f"<Session {self.uuid} {state} held={len(self.held)}>"
