"""The old process's freeze for one handoff, and its undoing: what stops, what each socket
becomes (it moves, or it stays and serves on), and how everything serves again.

Rules (the steps are ``steps.Step``; their limits ``steps.LIMITS``):
- ``quiesce``: the listener and the admin API stop accepting (their listening sockets are
  kept, for the new process or for a thaw); admin requests under way finish.
- ``freeze``: every plain-TCP socket stops being read and its transport is replaced by a
  ``CaptureTransport``; every reply the upstream links receive is diverted (kept in order).
  The bus stops reading, what it read is answered and forwarded, then it stops sending; the
  fleet copy of the sessions is written, then stops. For at most ``FLUSH`` seconds the kernel
  takes what the transports still buffer and the links send what they queue; what the links
  still queue then comes back to the sockets' held data.
- Each socket then moves with its state or stays (``steps.disposition``); one that stays is
  thawed at once. The moving sockets are ordered: those that talked since the last heartbeat
  (or hold something) first (``steps.talks``).
- Once the new process holds them (``let_go``), each moved socket's session and transport are
  let go here without a trace (the kernel socket lives on in the new process); what was
  written to it after its state was taken goes on as a reply.
- ``thaw`` undoes a freeze: transports back, captured writes written, what was read placed,
  diverted replies routed, the bus and the fleet copy resumed, listening again. Each step is
  done whatever became of the one before (a failure is logged).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field

from paradoxplex.node.handoff.codec import SessionSnapshot
from paradoxplex.node.handoff.parts import HandoffParts, Listening
from paradoxplex.node.handoff.steps import FLUSH, Disposition, disposition, talks
from paradoxplex.node.handoff.transports import CaptureTransport, Gone
from paradoxplex.node.sockets.session import Session
from paradoxplex.shared.fleet import BusPosition
from paradoxplex.shared.flow import OPEN
from paradoxplex.wire import upstream_pb2

log = logging.getLogger("paradoxplex.node.handoff")


@dataclass(slots=True)
class Moved:
    session: Session
    capture: CaptureTransport
    snapshot: SessionSnapshot


@dataclass(slots=True)
class Frozen:
    """What a freeze changed, to send on or to undo."""

    listener: socket.socket | None = None
    admin: socket.socket | None = None
    listening_stopped: bool = False
    frozen_at: float = 0.0
    snapshot_at: float = 0.0  # when every socket's state was taken
    sent_at: float = 0.0  # when ``Done`` went
    captured: dict[str, CaptureTransport] = field(default_factory=dict)
    replies: list[bytes] = field(default_factory=list)  # diverted upstream replies, in order
    sent: int = 0  # how many of them went in ``Done`` (the new process's once it commits)
    bus: BusPosition | None = None
    upkeep_paused: bool = False
    successor: str = ""  # the new process's incarnation (its ``Ready``): it may claim the id
    moved: list[Moved] = field(default_factory=list)
    kept: list[tuple[Session, Disposition]] = field(default_factory=list)

    def divert(self, reply: upstream_pb2.OutputStreamRequest) -> None:
        self.replies.append(reply.SerializeToString())

    def take_replies(self) -> list[bytes]:
        replies, self.replies = self.replies, []
        return replies

    def close_listening(self) -> None:
        for sock in (self.listener, self.admin):
            if sock is not None:
                sock.close()
        self.listener = self.admin = None


class Freezer:
    """Freezes this node for one handoff, lets go of what moved, or thaws (see the module's
    rules)."""

    def __init__(self, parts: HandoffParts) -> None:
        self.state = parts.state
        self.hosting = parts.hosting
        self.pool = parts.pool
        self.endpoint = parts.endpoint
        self.upkeep = parts.upkeep
        self.serving: Listening = parts.serving

    # quiesce and freeze ---------------------------------------------------------------

    async def quiesce(self, frozen: Frozen) -> None:
        frozen.listener, frozen.admin = self.serving.listening_sockets()
        frozen.listening_stopped = True
        await self.serving.stop_listening()

    async def freeze(self, frozen: Frozen) -> None:
        frozen.frozen_at = time.monotonic()
        self.pool.divert(frozen.divert)
        for session in list(self.state.sessions.values()):
            transport = session.transport
            if (
                transport is None
                or isinstance(transport, CaptureTransport)
                or transport.get_extra_info("ssl_object") is not None
            ):
                continue
            transport.pause_reading()
            capture = CaptureTransport(transport)
            session.transport = capture
            frozen.captured[session.client_uuid] = capture
        frozen.bus = await self.endpoint.pause(within=FLUSH)
        frozen.upkeep_paused = True  # from here on a thaw starts it again
        await self.upkeep.pause(flush=FLUSH)
        deadline = time.monotonic() + FLUSH
        while time.monotonic() < deadline and not self._flushed(frozen):  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        self._snapshot(frozen)
        frozen.snapshot_at = time.monotonic()

    def _flushed(self, frozen: Frozen) -> bool:
        if self.pool.queued():
            return False
        return not any(c.real.get_write_buffer_size() for c in frozen.captured.values())

    def _snapshot(self, frozen: Frozen) -> None:
        """Decide, per socket, whether it moves (its state taken) or stays (thawed now)."""
        for session in list(self.state.sessions.values()):
            info = session.info
            if info is None:
                continue
            capture = frozen.captured.get(info.client_uuid)
            transport = capture.real if capture is not None else session.transport
            fate = disposition(
                frozen=capture is not None,
                tls=transport is not None and transport.get_extra_info("ssl_object") is not None,
                open=session.flow.state is OPEN and not (capture and capture.ending),
                unwritten=capture.real.get_write_buffer_size() if capture else 0,
            )
            if fate is not Disposition.MOVE or capture is None:
                frozen.kept.append((session, fate))
                if capture is not None:
                    del frozen.captured[info.client_uuid]
                    self._restore(session, capture)
                continue
            held = list(session.flow.held)
            session.flow.drop_all()
            self.pool.forget(info.client_uuid)
            snapshot = SessionSnapshot(
                info,
                proxied=bool(session.peer),
                unframed=session.framer.pending,
                held=held,
                replies=capture.take(),
            )
            frozen.moved.append(Moved(session, capture, snapshot))
        numbered = self.pool.take_numbered({m.session.client_uuid for m in frozen.moved})
        for moved in frozen.moved:
            moved.snapshot.numbered = numbered.get(moved.session.client_uuid, [])
        # the new process adopts them in this order: the sockets that talk first (they see
        # the pause; an idle one does not)
        frozen.moved.sort(key=_quiet)

    # let go -------------------------------------------------------------------------------

    def let_go(self, frozen: Frozen) -> None:
        """The new process holds every moved socket: let each go here without a trace."""
        late: list[bytes] = []
        for moved in frozen.moved:
            session, capture = moved.session, moved.capture
            for payload in capture.take():  # written after the snapshot: goes as a reply
                reply = upstream_pb2.OutputStreamRequest(
                    client_uuid=session.client_uuid, payload=payload
                )
                late.append(reply.SerializeToString())
            session.hand_over()
            self.hosting.let_go(session)
            real = capture.real
            real.set_protocol(Gone())
            real.abort()  # this process's descriptor only: the socket lives on over there
        frozen.captured.clear()
        frozen.replies[:0] = late

    # thaw -------------------------------------------------------------------------------

    async def thaw(self, frozen: Frozen) -> None:
        """Undo a freeze: this process serves everything it holds again. Each step is done
        whatever became of the one before (logged)."""
        self.pool.divert(None)
        for moved in frozen.moved:
            snapshot = moved.snapshot
            self.pool.resume(snapshot.numbered)  # placed before what it had read
            self._restore(moved.session, moved.capture, snapshot.held, snapshot.replies)
            frozen.captured.pop(moved.session.client_uuid, None)
        for client_uuid, capture in frozen.captured.items():
            session = self.state.sessions.get(client_uuid)
            if session is not None:
                self._restore(session, capture)
        frozen.captured.clear()
        await _step("route the kept replies", self._route(frozen.take_replies()))
        if frozen.bus is not None or frozen.frozen_at:
            await _step("resume the bus", self.endpoint.resume())
        if frozen.upkeep_paused:
            if frozen.successor:  # it may have claimed the node id before it failed
                await _step("claim the node id back", self.upkeep.reclaim(frozen.successor))
            self.upkeep.start()
        if frozen.listening_stopped:
            listener, admin = frozen.listener, frozen.admin
            frozen.listener = frozen.admin = None  # the server owns them now
            await _step("listen again", self.serving.listen_again(listener, admin))

    async def _route(self, replies: list[bytes]) -> None:
        for data in replies:
            pending = self.pool.receive_reply(upstream_pb2.OutputStreamRequest.FromString(data))
            if pending is not None:
                await pending

    def _restore(
        self,
        session: Session,
        capture: CaptureTransport,
        held: list[bytes] | None = None,
        replies: list[bytes] | None = None,
    ) -> None:
        """Give a frozen socket its transport back: what was written meanwhile (``replies``
        first, taken for the new process) is written, what it read (``held``) placed."""
        real = capture.real
        if session.transport is capture:
            session.transport = real
        for chunk in (*(replies or ()), *capture.take()):
            real.write(chunk)
        if capture.ending == "abort":
            real.abort()
        elif capture.ending == "close":
            real.close()
        if held:
            session.flow.requeue(held)
        if not capture.ending and session.flow.reading:
            real.resume_reading()
        if session.flow.held and session.flow.state is OPEN:
            self.hosting.submit(session)

    def __repr__(self) -> str:
        return f"<Freezer sockets={len(self.state.sessions)}>"


async def _step(what: str, work: Awaitable[None]) -> None:
    """One step of a thaw; a failure is logged and the thaw goes on."""
    try:
        await work
    except Exception:
        log.exception("handoff: thawing, could not %s", what)


def _quiet(moved: Moved) -> bool:
    """True for a socket that does not go first (``steps.talks``): sorts after those."""
    info, snapshot = moved.snapshot.info, moved.snapshot
    holds = bool(snapshot.held or snapshot.replies or snapshot.unframed or snapshot.numbered)
    io = info.bytes_in + info.bytes_out
    return not talks(io=io, synced_io=moved.session.synced_io, holds=holds)
