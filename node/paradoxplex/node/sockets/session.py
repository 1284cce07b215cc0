"""One downstream socket: an ``asyncio.Protocol`` that frames reads and writes replies.

Limits (``SessionLimits``: ``framing`` and ``max_frame``, then the flow's ``FlowLimits``, set
from the node's config; ``NODE_FLOW`` holds the node's defaults):
- ``max_frame``: a larger frame closes the socket (reason ``frame too large``).
- ``write_buffer``: bytes buffered for a slow reader; past it the ``overflow`` policy applies:
  ``close`` (default) closes the socket, ``drop`` drops that reply. Either is counted.
- The node's ``max_buffered`` bounds all sockets' buffers together (``ReplyBuffers``): each
  write tells it this socket's share; a reply that does not fit asks the host to make room.
- ``hold_timeout``: read frames that no upstream could take wait this long, reading paused,
  before the socket is closed (reason ``no upstream took its data``).
- ``idle_timeout``: no byte either way for this long closes the socket (0: off).
- ``frames_per_turn`` (256) and ``rate`` (``max_frames_per_second``; 0: off): what one
  socket may send upstream in one loop turn and in one second; the rest waits in the flow,
  reading paused (see ``Flow.allowance``).
- ``linger``: after the client half-closes, replies are still written for this long
  (default 1 s: a client that closed for good looks the same, and must leave the fleet's
  socket list within 2 s).
The decisions (when to read, the write budget, the deadlines, the held frames) are the core's
``Flow``; this class does the I/O they call for, with one timer for all deadlines. While reading
is paused, a probe (``TCP_INFO``, Linux) notices a client that went away without reading it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, cast

from paradoxplex.node.metrics import Metrics
from paradoxplex.shared.buffers import ReplyBuffers
from paradoxplex.shared.drops import DropReason
from paradoxplex.shared.errors import FrameTooLarge
from paradoxplex.shared.flow import (
    DROP_NODE_FULL,
    OPEN,
    WRITE,
    Close,
    Deadline,
    Drop,
    Flow,
    FlowLimits,
    Reading,
)
from paradoxplex.shared.framing import DEFAULT_FRAMING, DEFAULT_MAX_FRAME, Framer, make_framer
from paradoxplex.shared.sessions import SessionInfo, SessionState

log = logging.getLogger("paradoxplex.node.sockets")

PROBE_INTERVAL = 0.25
# tcp_info.tcpi_state (linux/tcp.h): the peer sent FIN, or the connection was reset
TCP_CLOSE = 7
TCP_CLOSE_WAIT = 8


NODE_FLOW = FlowLimits(probe_interval=PROBE_INTERVAL, frames_per_turn=256, turn=0.001)


@dataclass(frozen=True, slots=True)
class SessionLimits:
    """Every socket's limits; one object, shared by all the sockets of a node."""

    framing: str = DEFAULT_FRAMING
    max_frame: int = DEFAULT_MAX_FRAME
    flow: FlowLimits = NODE_FLOW


class SessionHost(Protocol):
    """What a session needs from its node."""

    metrics: Metrics
    buffers: ReplyBuffers[Session]

    def open_session(self, session: Session) -> SessionInfo | None:
        """Register a new socket; None refuses it (max_connections)."""

    def adopt_session(self, session: Session) -> None:
        """Register a socket handed over by another process (its ``info`` is set)."""

    def make_room(self, session: Session, size: int) -> bool:
        """Close the sockets with the most bytes buffered until a reply of ``size`` bytes to
        ``session`` fits in ``max_buffered``; False when ``session`` itself was closed."""

    def close_session(self, session: Session, reason: str) -> None: ...

    def submit(self, session: Session) -> None:
        """Place the session's held frames on upstream links, as many as fit."""

    def upstream_ready(self) -> bool: ...


def peer_state(transport: asyncio.BaseTransport) -> int | None:
    """The kernel's TCP state of the socket (``TCP_*``), without reading it; None if unknown."""
    sock = transport.get_extra_info("socket")
    option = getattr(socket, "TCP_INFO", None)
    if sock is None or option is None:
        return None
    try:
        info: bytes = sock.getsockopt(socket.IPPROTO_TCP, option, 1)
    except (OSError, ValueError):  # uvloop: ValueError once the fd is closed
        return None
    return info[0] if info else None


class Session(asyncio.Protocol):
    """A socket's I/O; the decisions are the flow's, the framer's, the balancer's and the
    router's. Kept small (issue 14, RSS per idle socket): the limits, the raw framer and the
    reply budget are the node's, shared; a slot is only for what differs per socket."""

    __slots__ = (
        "_loop",
        "_timer",
        "_timer_at",
        "flow",
        "framer",
        "host",
        "info",
        "peer",
        "source",
        "synced_io",
        "traffic",
        "transport",
    )

    def __init__(self, host: SessionHost, limits: SessionLimits) -> None:
        self.host = host
        self.traffic = host.metrics.traffic
        self.framer: Framer = make_framer(limits.framing, max_frame=limits.max_frame)
        self.flow = Flow(limits.flow)
        self.info: SessionInfo | None = None
        self.source = ""  # the client's address as per-source limits count it
        self.peer = ""  # the client's host:port from a PROXY header; "": the connection's
        self.transport: asyncio.Transport | None = None
        self.synced_io = 0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    @property
    def client_uuid(self) -> str:
        return self.info.client_uuid if self.info else ""

    @property
    def closing(self) -> bool:
        return self.flow.state is not OPEN

    @property
    def close_reason(self) -> str:
        return self.flow.reason

    # asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one
        self.transport = cast(asyncio.Transport, transport)
        self._loop = asyncio.get_running_loop()  # each call costs a getpid() system call
        if self.info is not None:  # handed over by another process (a hot handoff)
            self.host.adopt_session(self)
        else:
            self.info = self.host.open_session(self)
        if self.info is None:
            self.flow.abort("refused")
            self.transport.abort()
            return
        if self.flow.limits.idle_timeout > 0:
            self.flow.touch(self._loop.time())
            self._arm()

    def data_received(self, data: bytes) -> None:
        info, flow = self.info, self.flow
        if info is None or flow.state is not OPEN:
            return
        info.bytes_in += len(data)
        traffic = self.traffic
        traffic.bytes_in += len(data)
        if flow.limits.idle_timeout:
            flow.touch(self._loop.time())
        frames = self._frames(data, info)
        if not frames:
            return
        info.messages_in += len(frames)
        traffic.messages_in += len(frames)
        flow.hold(frames)
        self.host.submit(self)

    def read_while_paused(self, data: bytes) -> None:
        """What the transport read although the socket is paused (an adopted socket's first
        read: uvloop reads before a pause can land): framed and held, placed on resume."""
        info = self.info
        if info is None or self.flow.state is not OPEN:
            return
        frames = self._frames(data, info)
        if frames is None:
            return
        info.bytes_in += len(data)
        info.messages_in += len(frames)
        self.traffic.bytes_in += len(data)
        self.traffic.messages_in += len(frames)
        self.flow.hold(frames)

    def _frames(self, data: bytes, info: SessionInfo) -> list[bytes] | None:
        """The frames ``data`` completes; None (counted, logged, the socket closed) when a
        frame is larger than allowed."""
        try:
            return self.framer.feed(data)
        except FrameTooLarge as error:
            self.host.metrics.bad_input.labels("frame_too_large").inc()
            log.warning("socket %s: %s; closing it", info.client_uuid, error)
            self.close("frame too large")
            return None

    def eof_received(self) -> bool:
        """The client half-closed: keep writing replies for ``linger`` seconds, then close.
        TLS has no half-close: its socket closes at once (asyncio warns on True there)."""
        if self.transport is not None and self.transport.get_extra_info("ssl_object"):
            return False
        self._apply(self.flow.end_of_input(self._loop.time()))
        self._arm()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.flow.lost(error=exc is not None)
        if self.info is None:
            return
        self.host.close_session(self, self.flow.reason)

    # writes -----------------------------------------------------------------------------

    def write(self, payload: bytes) -> bool:
        """Write a reply unchanged; False when it was not (closing, overflow): then counted."""
        transport, info = self.transport, self.info
        if transport is None or info is None:
            self.host.metrics.drops.labels(DropReason.SOCKET_CLOSED).inc()
            return False
        size, buffered = len(payload), transport.get_write_buffer_size()
        verdict = self.flow.write(buffered, size)
        if verdict is not WRITE:
            self._refused(cast(Drop | Close, verdict), size)
            return False
        buffers = self.host.buffers
        if buffers.limit:
            if not buffers.fits(size) and not self.host.make_room(self, size):
                self._refused(DROP_NODE_FULL, size)
                return False
            transport.write(payload)  # a non-empty buffer takes it all, an empty one may not
            buffers.update(self, buffered + size if buffered else transport.get_write_buffer_size())
        else:
            transport.write(payload)
        info.bytes_out += len(payload)
        info.messages_out += 1
        traffic = self.traffic
        traffic.bytes_out += len(payload)
        traffic.messages_out += 1
        if self.flow.limits.idle_timeout:
            self.flow.touch(self._loop.time())
        return True

    def _refused(self, verdict: Drop | Close, size: int) -> None:
        self.host.metrics.drops.labels(verdict.reason).inc()
        if isinstance(verdict, Close):
            limit = self.flow.limits.write_buffer
            log.warning(
                "socket %s: write buffer over %d bytes; closing it", self.client_uuid, limit
            )
            self._abort_transport()
        else:
            log.debug(
                "socket %s: reply of %d bytes dropped (%s)", self.client_uuid, size, verdict.reason
            )

    # flow control -----------------------------------------------------------------------

    def allowance(self) -> int:
        """How many of ``flow.held`` the host may place now."""
        return self.flow.allowance(self._loop.time())

    def placed(self, count: int) -> None:
        """The host placed the first ``count`` of ``flow.held``; reading follows what is left."""
        flow = self.flow
        change = flow.placed(count, self._loop.time())
        if change is not None:
            self._apply(change)
            if change is Reading.PAUSE and flow.waiting_for_rate:
                self.host.metrics.rate_limited.inc()
        if flow.held:  # the hold deadline; a cleared one lets the timer fire for nothing
            self._arm()

    def set_paused(self, paused: bool) -> None:
        """Admin pause/resume: a paused socket is not read and is not *active*; on resume,
        what it had read meanwhile (a handed-over socket's) goes on."""
        if self.info is not None:
            self.info.state = SessionState.PAUSED if paused else SessionState.ACTIVE
        if self.transport is None:
            return
        self._apply(self.flow.set_paused(paused, self._loop.time()))
        self._arm()
        if not paused and self.flow.held and self.flow.state is OPEN:
            self.host.submit(self)

    def _apply(self, change: Reading | None) -> None:
        transport = self.transport
        if change is None or transport is None:
            return
        if change is Reading.RESUME:
            transport.resume_reading()
        else:
            transport.pause_reading()

    # deadlines --------------------------------------------------------------------------

    def _arm(self) -> None:
        """One timer, at the flow's next deadline (an earlier timer stays: it re-arms)."""
        deadline = self.flow.next_deadline()
        if deadline is None:
            return
        if self._timer is not None:
            if self._timer_at <= deadline:
                return
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = self._loop.call_at(deadline, self._deadline)

    def _deadline(self) -> None:
        self._timer = None
        for due in self.flow.expired(self._loop.time()):
            EXPIRED[due](self)
        self._arm()

    def _hold_expired(self) -> None:
        reason = "upstreams full" if self.host.upstream_ready() else "no upstream ready"
        count = self.flow.drop_all()
        self.host.metrics.drops.labels(DropReason.HOLD_TIMEOUT).inc(count)
        log.warning(
            "socket %s: %d frames waited %.1fs (%s); closing it",
            self.client_uuid,
            count,
            self.flow.limits.hold_timeout,
            reason,
        )
        self.close(f"no upstream took its data: {reason}")

    def _pace_expired(self) -> None:
        """Its turn (or a token) came: place more of what is held."""
        if self.flow.held:
            self.host.submit(self)

    def _idle_expired(self) -> None:
        self.close("idle timeout")

    def _linger_expired(self) -> None:
        self.close("client closed")

    def _flush_expired(self) -> None:
        self.abort(self.flow.reason)

    def _probe(self) -> None:
        """Reading is paused: did the client go away? (Its data stays unread.)"""
        if self.transport is None:
            return
        state = peer_state(self.transport)
        if state == TCP_CLOSE_WAIT:
            self.flow.peer_closed(self._loop.time())
        elif state == TCP_CLOSE:
            self.abort("connection error")

    # close ------------------------------------------------------------------------------

    def close(self, reason: str) -> None:
        """Close the socket after writing what is buffered (at most the flow's ``flush_timeout``:
        a peer that does not read is then aborted); ``reason`` goes to logs and metrics."""
        transport = self.transport
        if transport is None or self.flow.state is not OPEN:
            return
        transport.close()
        self.flow.close(reason, buffered=transport.get_write_buffer_size(), now=self._loop.time())
        self._arm()

    def abort(self, reason: str) -> None:
        self.flow.abort(reason)
        self._abort_transport()

    def hand_over(self) -> asyncio.Transport | None:
        """Another process holds this socket now: stop every deadline and forget the
        transport (the caller detaches it); nothing more is written or read here."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        transport, self.transport = self.transport, None
        self.flow.abort("handed over")
        return transport

    def _abort_transport(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def __repr__(self) -> str:
        return f"<Session {self.client_uuid} {self.flow!r}>"


EXPIRED: dict[Deadline, Callable[[Session], None]] = {
    Deadline.HOLD: Session._hold_expired,
    Deadline.PACE: Session._pace_expired,
    Deadline.IDLE: Session._idle_expired,
    Deadline.LINGER: Session._linger_expired,
    Deadline.PROBE: Session._probe,
    Deadline.FLUSH: Session._flush_expired,
}
