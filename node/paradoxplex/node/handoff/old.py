"""The old process's side of a hot handoff: offer on ``--handoff-socket``, freeze, send,
let go, relay, exit; or thaw and serve on.

Rules (the steps are ``steps.Step``; their limits ``steps.LIMITS``):
- One handoff at a time; a second process that connects meanwhile is refused. The socket file
  is made with mode 0600 and only a process of the same user (or root) is heard.
- ``hello``: the terms must match (``terms.refusal``) and the fleet must answer; else one
  refusal line, counted (``refused``), and nothing else happens.
- ``quiesce``: the listener and the admin API stop accepting (their listening sockets are
  kept, for the new process or for a thaw); admin requests under way finish.
- ``freeze``: every plain-TCP socket stops being read and its transport is replaced by a
  ``CaptureTransport``; every reply the upstream links receive is diverted (kept in order).
  The bus stops reading, what it read is answered and forwarded, then it stops sending; the
  fleet copy of the sessions is written, then stops. For at most ``FLUSH`` seconds the kernel
  takes what the transports still buffer and the links send what they queue; what the links
  still queue then comes back to the sockets' held data.
- ``transfer``: the listening sockets; each socket that moves with its state, as many per
  frame as ``channel.MAX_FDS`` allows, those that talked since the last heartbeat (or hold
  something) first: the new process adopts them in this order, and an idle socket does not
  notice the pause; the bus position; then ``Done`` with the sockets kept here, the replies
  diverted so far and the idempotency keys of commands on the sockets (a retry through the
  new process replays).
- ``release`` (on ``Committed``, the point of no return): each moved socket's session and
  transport are let go here without a trace (the kernel socket lives on in the new process),
  the socket file is removed, ``Released`` is sent.
- ``relay``: what the links still receive goes to the new process (a reply for a socket kept
  here is written here); the new process's writes, pauses, resumes and closes for kept
  sockets are done here; kept sockets that open or close are announced. Kept sockets get
  ``drain_grace`` seconds, then are closed; once none is left, the links were quiet for
  ``RELAY_QUIET`` seconds and no upstream holds a message unacknowledged (the batch
  protocol), the links close: what an upstream still held unacknowledged goes to the new
  process, which delivers it again; ``Relay.finished`` is sent and the node stops (exit 0)
  without leaving the fleet: the node lives on in the new process.
- Any failure before ``Committed`` is read thaws everything: transports back, captured writes
  written, what was read placed, diverted replies routed, the bus and the fleet copy resumed,
  listening again; one log line and ``paradoxplex_handoffs_total{outcome}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
import time
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from paradoxplex.node.delivery.commands import SocketCommands
from paradoxplex.node.delivery.endpoint import BusEndpoint
from paradoxplex.node.fleet.upkeep import FleetStatus, FleetUpkeep
from paradoxplex.node.handoff.channel import MAX_FDS, Channel, ChannelClosed, peer_uid
from paradoxplex.node.handoff.codec import (
    SessionSnapshot,
    decode_terms,
    encode_keys,
    encode_numbered,
    encode_position,
    encode_session,
    encode_terms,
    encode_upstreams,
)
from paradoxplex.node.handoff.steps import (
    FLUSH,
    LIMITS,
    OLD_EXPECTS,
    RELAY_QUIET,
    Disposition,
    Outcome,
    Step,
    disposition,
    expect,
    outcome,
    talks,
)
from paradoxplex.node.handoff.terms import Terms, refusal
from paradoxplex.node.handoff.transports import CaptureTransport, Gone
from paradoxplex.node.links.pool import UpstreamPool
from paradoxplex.node.links.queue import Outgoing
from paradoxplex.node.metrics import Metrics
from paradoxplex.node.sockets.hosting import SessionHosting
from paradoxplex.node.sockets.session import Session
from paradoxplex.node.state import NodeState
from paradoxplex.shared.drops import DropReason
from paradoxplex.shared.errors import FleetUnavailable, HandoffError, HandoffRefused
from paradoxplex.shared.fleet import NO_POSITION, BusPosition
from paradoxplex.shared.flow import OPEN
from paradoxplex.wire import handoff_pb2 as pb
from paradoxplex.wire import upstream_pb2

log = logging.getLogger("paradoxplex.node.handoff")

#: Bytes of socket state per frame (a larger socket goes alone).
CHUNK_BYTES = 4 * 1024 * 1024
#: How often the relay looks for kept sockets that opened or closed.
WATCH_INTERVAL = 0.05


class Serving(Protocol):
    """The node's listening ends, as the old side of a handoff needs them."""

    def listening_sockets(self) -> tuple[socket.socket | None, socket.socket | None]:
        """Duplicates of the listener's and the admin API's listening sockets."""

    async def stop_listening(self) -> None:
        """Accept nothing more (admin requests under way finish)."""

    async def listen_again(
        self, listener: socket.socket | None, admin: socket.socket | None
    ) -> None: ...

    def handed_over(self) -> None:
        """Everything went: stop without leaving the fleet."""


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


class HandoffOffer:
    """Offers this node to a successor on ``path`` (see the module's rules)."""

    def __init__(
        self,
        path: str,
        *,
        terms: Terms,
        version: str,
        state: NodeState,
        hosting: SessionHosting,
        pool: UpstreamPool,
        endpoint: BusEndpoint,
        commands: SocketCommands,
        upkeep: FleetUpkeep,
        status: FleetStatus,
        serving: Serving,
        metrics: Metrics,
        drain_grace: float,
    ) -> None:
        self.path = path
        self.terms = terms
        self.version = version
        self.state = state
        self.hosting = hosting
        self.pool = pool
        self.endpoint = endpoint
        self.commands = commands
        self.upkeep = upkeep
        self.status = status
        self.serving = serving
        self.metrics = metrics
        self.drain_grace = drain_grace
        self.busy = False
        self.handed = False  # everything went: the node lives on in the successor
        self._listening: socket.socket | None = None
        self._task: asyncio.Task[None] | None = None
        self._handoff: asyncio.Task[None] | None = None

    # the socket file ------------------------------------------------------------------

    async def start(self) -> None:
        """Listen on ``path`` (a stale socket file is replaced; a live one is an OSError)."""
        self._listening = listen_unix(self.path)
        self._task = asyncio.create_task(self._accept(), name="handoff offer")

    async def close(self) -> None:
        for task in (self._task, self._handoff):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._handoff = None
        self._unlink()

    def _unlink(self) -> None:
        """Stop offering: no more accepts, the socket file removed (it is the successor's to
        make again)."""
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
        if self._listening is not None:
            self._listening.close()
            self._listening = None
            with contextlib.suppress(OSError):
                os.unlink(self.path)

    async def _accept(self) -> None:
        """One handoff at a time; another process that connects meanwhile is refused."""
        loop = asyncio.get_running_loop()
        while self._listening is not None:
            conn, _ = await loop.sock_accept(self._listening)
            if self.busy:
                self.metrics.handoffs.labels("refused").inc()
                await _refuse(Channel(conn), "a handoff is already under way")
                continue
            self.busy = True
            self._handoff = asyncio.create_task(self._one(Channel(conn)), name="handoff")

    async def _one(self, channel: Channel) -> None:
        try:
            await self.handle(channel)
        except Exception:  # a task boundary: the node serves on whatever happened
            log.exception("handoff failed unexpectedly")
        finally:
            self.busy = False

    # one handoff ------------------------------------------------------------------------

    async def handle(self, channel: Channel) -> None:
        """Run one handoff on ``channel``; never raises for what the other side does."""
        frozen = Frozen()
        reached = Step.HELLO
        pid = 0
        try:
            uid = peer_uid(channel.sock)
            if uid not in (os.getuid(), 0):
                raise HandoffRefused(f"user {uid} may not take this node's sockets")
            hello = (await _receive(channel, Step.HELLO, OLD_EXPECTS)).hello
            pid = hello.pid
            await self._hello(channel, hello)
            reached = Step.PREPARE
            await _receive(channel, Step.PREPARE, OLD_EXPECTS)
            reached = Step.QUIESCE
            async with asyncio.timeout(LIMITS[Step.QUIESCE]):
                await self._quiesce(frozen)
            reached = Step.FREEZE
            async with asyncio.timeout(LIMITS[Step.FREEZE]):
                await self._freeze(frozen)
            reached = Step.TRANSFER
            async with asyncio.timeout(LIMITS[Step.TRANSFER]):
                await self._transfer(channel, frozen)
            reached = Step.COMMIT
            await _receive(channel, Step.COMMIT, OLD_EXPECTS)
            reached = Step.RELEASE
        except HandoffRefused as refused:
            await _refuse(channel, refused.reason, hello=pid != 0)
            self.metrics.handoffs.labels("refused").inc()
            log.warning("handoff to pid %d refused: %s; serving on", pid, refused.reason)
            channel.close()
            return
        except (HandoffError, ChannelClosed, TimeoutError, FleetUnavailable, OSError) as error:
            await self._failed(channel, frozen, reached, pid, error)
            return
        except Exception as error:  # a bug: still, the node serves on
            log.exception("handoff: unexpected error at %s", reached.value)
            await self._failed(channel, frozen, reached, pid, error)
            return
        except asyncio.CancelledError:  # the node stops meanwhile: it stops serving all
            channel.close()
            if outcome(reached) is Outcome.THAWED:
                await self._thaw(frozen)
            raise
        await self._release(channel, frozen)
        await self._relay(channel, frozen)

    async def _hello(self, channel: Channel, hello: pb.Hello) -> None:
        why = refusal(self.terms, decode_terms(hello.terms))
        if why is not None:
            raise HandoffRefused(why)
        if not self.status.ok:
            raise HandoffRefused("the fleet state does not answer here: try again later")
        offer = pb.Offer(
            terms=encode_terms(self.terms),
            pid=os.getpid(),
            version=self.version,
            started_at=self.state.started_at,
            incarnation=self.state.incarnation,
            upstreams=encode_upstreams(link.spec for link in self.pool.links.values()),
            sockets=len(self.state.sessions),
        )
        await channel.send(pb.Frame(offer=offer))
        log.info("handoff: pid %d (version %s) is taking over", hello.pid, hello.version)

    async def _failed(
        self, channel: Channel, frozen: Frozen, reached: Step, pid: int, error: BaseException
    ) -> None:
        channel.close()
        where = outcome(reached)
        if where is Outcome.THAWED:
            await self._thaw(frozen)
        self.metrics.handoffs.labels(where.value).inc()
        reason = _reason(error)
        thawed = f"; thawed {len(frozen.captured)} sockets" if where is Outcome.THAWED else ""
        log.warning(
            "handoff to pid %d failed at %s: %s; serving on%s", pid, reached.value, reason, thawed
        )

    # quiesce and freeze ---------------------------------------------------------------

    async def _quiesce(self, frozen: Frozen) -> None:
        frozen.listener, frozen.admin = self.serving.listening_sockets()
        frozen.listening_stopped = True
        await self.serving.stop_listening()

    async def _freeze(self, frozen: Frozen) -> None:
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

    # transfer ---------------------------------------------------------------------------

    async def _transfer(self, channel: Channel, frozen: Frozen) -> None:
        listening = [sock.fileno() for sock in (frozen.listener, frozen.admin) if sock]
        listeners = pb.Listeners(
            listener=frozen.listener is not None, admin=frozen.admin is not None
        )
        await channel.send(pb.Frame(listeners=listeners), listening)
        for chunk in _chunks(frozen.moved):
            items = [encode_session(moved.snapshot) for moved in chunk]
            fds = [_fileno(moved.capture) for moved in chunk]
            await channel.send(pb.Frame(sessions=pb.Sessions(items=items)), fds)
        await channel.send(pb.Frame(bus=encode_position(frozen.bus or NO_POSITION)))
        kept = [
            encode_session(SessionSnapshot(session.info, proxied=bool(session.peer)))
            for session, _ in frozen.kept
            if session.info is not None and session.client_uuid in self.state.sessions
        ]
        frozen.sent = len(frozen.replies)  # kept until the commit: a thaw routes them here
        done = pb.Done(
            moved=len(frozen.moved),
            kept=kept,
            replies=frozen.replies[: frozen.sent],
            frozen_at=frozen.frozen_at,
            socket_keys=encode_keys(self.commands.keys.done(time.monotonic())),
        )
        await channel.send(pb.Frame(done=done))
        frozen.sent_at = time.monotonic()

    # release and relay ------------------------------------------------------------------

    async def _release(self, channel: Channel, frozen: Frozen) -> None:
        """The new process holds every moved socket now: say so first (it serves at once;
        nothing here reads or writes a frozen socket), then let them go here."""
        self.handed = True
        self.hosting.handed_over()
        frozen.close_listening()
        self._unlink()
        del frozen.replies[: frozen.sent]  # routed by the new process
        with contextlib.suppress(ChannelClosed, OSError):
            await channel.send(pb.Frame(released=pb.Released()))
        released = time.monotonic()
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
        kept = len([1 for s, _ in frozen.kept if s.client_uuid in self.state.sessions])
        log.info(
            "handoff: %d sockets moved, %d kept here (TLS or closing) and drained; frozen in "
            "%.0f ms, sent in %.0f ms, committed in %.0f ms",
            len(frozen.moved),
            kept,
            (frozen.snapshot_at - frozen.frozen_at) * 1000,
            (frozen.sent_at - frozen.snapshot_at) * 1000,
            (released - frozen.sent_at) * 1000,
        )

    async def _relay(self, channel: Channel, frozen: Frozen) -> None:
        relay = Relay(
            channel, self.state, self.pool, frozen, self.metrics, drain_grace=self.drain_grace
        )
        try:
            await relay.run()
        finally:
            channel.close()
            self.serving.handed_over()

    # thaw -------------------------------------------------------------------------------

    async def _thaw(self, frozen: Frozen) -> None:
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
        return f"<HandoffOffer {self.path!r} busy={self.busy}>"


class Relay:
    """The old process after the switch (see the module's rules)."""

    def __init__(
        self,
        channel: Channel,
        state: NodeState,
        pool: UpstreamPool,
        frozen: Frozen,
        metrics: Metrics,
        *,
        drain_grace: float,
    ) -> None:
        self.channel = channel
        self.state = state
        self.pool = pool
        self.frozen = frozen
        self.metrics = metrics
        self.late = 0  # replies that found no successor to go to
        self.drain_grace = drain_grace
        self.kept = {s.client_uuid for s, _ in frozen.kept if s.client_uuid in state.sessions}
        self.outgoing: asyncio.Queue[pb.Relay | None] = asyncio.Queue()
        self.last_reply = time.monotonic()
        self.gone = False  # the new process closed the connection

    async def run(self) -> None:
        for data in self.frozen.take_replies():
            self.send(pb.Relay(reply=data))
        self.pool.divert(self._reply)
        tasks = [
            asyncio.create_task(self._write(), name="handoff relay out"),
            asyncio.create_task(self._read(), name="handoff relay in"),
        ]
        try:
            await self._watch()
            await self._hand_over_unacknowledged()
            self.send(pb.Relay(finished=True))
            self.outgoing.put_nowait(None)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    await asyncio.shield(tasks[0])
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks)
            self.pool.divert(self._too_late)
            if self.late:
                log.warning("handoff: %d replies came with no successor to take them", self.late)

    async def _hand_over_unacknowledged(self) -> None:
        """Close the links; what an upstream did not acknowledge by then goes to the new
        process, which delivers it again (as after a broken link: the SDK drops a repeat)."""

        def successor(items: list[Outgoing]) -> None:
            for item in items:
                self.send(pb.Relay(unacknowledged=encode_numbered(item)))

        self.pool.hand_over(successor)
        await self.pool.close(grace=0.0)

    def send(self, message: pb.Relay) -> None:
        if not self.gone:
            self.outgoing.put_nowait(message)
        elif message.WhichOneof("op") in ("reply", "unacknowledged"):
            self._too_late(None)

    def _too_late(self, reply: upstream_pb2.OutputStreamRequest | None) -> None:
        self.late += 1
        self.metrics.drops.labels(DropReason.HANDOFF_LATE).inc()

    def _reply(self, reply: upstream_pb2.OutputStreamRequest) -> None:
        self.last_reply = time.monotonic()
        if reply.WhichOneof("target") == "client_uuid" and reply.client_uuid in self.kept:
            session = self.state.sessions.get(reply.client_uuid)
            if session is not None:
                session.write(reply.payload)
                return
        self.send(pb.Relay(reply=reply.SerializeToString()))

    async def _write(self) -> None:
        while True:
            message = await self.outgoing.get()
            if message is None:
                return
            try:
                await self.channel.send(pb.Frame(relay=message))
            except (ChannelClosed, OSError):
                self.gone = True
                return

    async def _read(self) -> None:
        try:
            while True:
                frame, fds = await self.channel.receive()
                for fd in fds:
                    os.close(fd)
                if frame.WhichOneof("body") == "relay":
                    self._apply(frame.relay)
        except (ChannelClosed, HandoffError, OSError):
            self.gone = True

    def _apply(self, relay: pb.Relay) -> None:
        op = relay.WhichOneof("op")
        if op == "write":
            session = self.state.sessions.get(relay.write.client_uuid)
            if session is not None:
                session.write(relay.write.payload)
            return
        client_uuid = getattr(relay, op) if op in ("pause", "resume", "close") else ""
        session = self.state.sessions.get(client_uuid)
        if session is None:
            return
        if op == "close":
            session.close("closed by admin")
        else:
            session.set_paused(op == "pause")

    async def _watch(self) -> None:
        """Until no kept socket is left and the links are quiet; kept sockets get
        ``drain_grace`` seconds."""
        deadline = time.monotonic() + self.drain_grace
        closed = False
        while True:
            self._announce()
            now = time.monotonic()
            acknowledged = not self.pool.totals.messages
            if not self.kept and now - self.last_reply >= RELAY_QUIET and acknowledged:
                return
            if now >= deadline and not closed:
                closed = True
                for client_uuid in list(self.kept):
                    session = self.state.sessions.get(client_uuid)
                    if session is not None:
                        session.close("node upgraded")
            if now >= deadline + 10.0:  # a socket that never finished closing
                return
            await asyncio.sleep(WATCH_INTERVAL)

    def _announce(self) -> None:
        """Tell the new process which kept sockets closed, and which appeared (a TLS
        handshake or a PROXY header that was under way at the freeze)."""
        held = self.state.sessions
        for client_uuid in [s for s in self.kept if s not in held]:
            self.kept.discard(client_uuid)
            self.send(pb.Relay(closed=client_uuid))
        for client_uuid, session in list(held.items()):
            if client_uuid not in self.kept and session.info is not None:
                self.kept.add(client_uuid)
                state = encode_session(SessionSnapshot(session.info, proxied=bool(session.peer)))
                self.send(pb.Relay(opened=state))


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


def _fileno(capture: CaptureTransport) -> int:
    sock = capture.real.get_extra_info("socket")
    return int(sock.fileno())


def _chunks(moved: list[Moved]) -> Iterator[list[Moved]]:
    chunk: list[Moved] = []
    size = 0
    for each in moved:
        snapshot = each.snapshot
        weight = len(snapshot.unframed) + sum(map(len, snapshot.held))
        weight += sum(map(len, snapshot.replies)) + 256
        weight += sum(len(item.payload) + 64 for item in snapshot.numbered)
        if chunk and (len(chunk) >= MAX_FDS or size + weight > CHUNK_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(each)
        size += weight
    if chunk:
        yield chunk


async def _receive(channel: Channel, step: Step, table: dict[Step, tuple[str, ...]]) -> pb.Frame:
    """The next frame, as ``step`` expects it, within the step's limit."""
    async with asyncio.timeout(LIMITS[step]):
        frame, fds = await channel.receive()
    for fd in fds:
        os.close(fd)
    body = frame.WhichOneof("body")
    expect(step, body, table)
    if body == "refusal":
        raise HandoffError(step.value, f"the new process gave up: {frame.refusal.reason}")
    return frame


async def _refuse(channel: Channel, reason: str, *, hello: bool = False) -> None:
    """Say no, in one line, and hang up; ``hello``: its hello was read already (else it is
    read first, briefly, so that the other side does not write into a closed socket)."""
    with contextlib.suppress(ChannelClosed, HandoffError, OSError, TimeoutError):
        async with asyncio.timeout(1.0):
            if not hello:
                await channel.receive()
            await channel.send(pb.Frame(refusal=pb.Refusal(reason=reason)))
    channel.close()


def _reason(error: BaseException) -> str:
    if isinstance(error, HandoffError):
        return error.reason
    if isinstance(error, TimeoutError):
        return "timed out"
    if isinstance(error, ChannelClosed):
        return f"the new process went away ({error})"
    if isinstance(error, FleetUnavailable):
        return f"fleet unavailable: {error.reason}"
    return str(error) or type(error).__name__


def listen_unix(path: str) -> socket.socket:
    """A listening Unix socket at ``path``, mode 0600; a stale file there is replaced, a live
    one (someone accepts on it) is an OSError."""
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.stat(path).st_mode):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                try:
                    probe.connect(path)
                except OSError:
                    os.unlink(path)
                else:
                    raise OSError(f"{path}: another process offers a handoff there")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        old_mask = os.umask(0o177)
        try:
            sock.bind(path)
        finally:
            os.umask(old_mask)
        sock.listen(4)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock
