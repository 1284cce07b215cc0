"""The new process's side of a hot handoff: reach the old process, prepare, receive, commit,
resume; then hear what the old process relays.

Rules (the steps are ``steps.Step``; their limits ``steps.LIMITS``):
- ``reach`` happens before the node is built: the old process's offer gives the node id
  (when ``--node-id`` was not given), its upstreams and its incarnation. A refusal or an
  unreachable path is a ``HandoffError`` with one line to print; the old process is untouched.
- ``prepare``: a link to every upstream the old process has (and to ``--upstream``), ready
  before anything freezes; at least one must be in rotation within the step's limit unless
  there are none at all.
- ``transfer``: what arrives is checked (``codec``) before anything is used; a bad record, a
  closed connection or an overrun is a ``HandoffError`` (and a ``Refusal`` to the old process
  when it can still hear it): the old one thaws, this process exits 1.
- ``commit``: the fleet learns this process is the node (``FleetUpkeep.take_over``, as the
  old process's incarnation: its claim on the node id holds, no socket record is hidden), then
  ``Committed``; nothing is read or written before ``Released``.
- ``resume``: each socket is adopted (``loop.connect_accepted_socket``) with its state: the
  bytes not yet framed go back into its framer, its numbered messages (the batch protocol)
  and then its held frames are placed, numbered on from its last number, its unwritten
  replies written first, its pause kept; what arrived before its session took it is replayed
  in order. Then the bus starts from the old position, the replies the old process diverted
  are routed, and the listener, the admin API and the heartbeat start. The idempotency keys
  of commands on the sockets come too: a retry through this process replays. The pause (freeze to
  resume) is measured on the one monotonic clock of the machine.
- ``relay``: replies from the old process's links are routed here; sockets it kept have
  stand-ins here (``RelayTransport``), listed, counted and reached like any other; their
  closes and opens come as messages. The relay ends with ``finished`` or the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from paradoxplex.node.delivery.commands import SocketCommands
from paradoxplex.node.delivery.endpoint import BusEndpoint
from paradoxplex.node.delivery.replies import ReplyRouter
from paradoxplex.node.fleet.upkeep import FleetUpkeep
from paradoxplex.node.handoff.channel import Channel, ChannelClosed
from paradoxplex.node.handoff.codec import (
    KeyRecord,
    SessionSnapshot,
    decode_keys,
    decode_numbered,
    decode_position,
    decode_session,
    decode_upstreams,
    encode_terms,
)
from paradoxplex.node.handoff.steps import LIMITS, NEW_EXPECTS, Pause, Step, expect
from paradoxplex.node.handoff.terms import Terms
from paradoxplex.node.handoff.transports import Arrival, RelayTransport
from paradoxplex.node.links.pool import UpstreamPool
from paradoxplex.node.metrics import Metrics
from paradoxplex.node.sockets.hosting import SessionHosting
from paradoxplex.node.sockets.session import Session
from paradoxplex.node.state import NodeState
from paradoxplex.shared.errors import FleetUnavailable, HandoffError, HandoffRefused
from paradoxplex.shared.fleet import NO_POSITION, BusPosition
from paradoxplex.shared.retry import BUS_RECONNECT, Backoff
from paradoxplex.shared.sessions import SessionState
from paradoxplex.shared.upstreams import UpstreamSpec
from paradoxplex.wire import handoff_pb2 as pb
from paradoxplex.wire import upstream_pb2

log = logging.getLogger("paradoxplex.node.handoff")

#: Sockets adopted at once; the event loop serves the adopted ones between two batches.
ADOPT_BATCH = 256


@dataclass(slots=True)
class Handshake:
    """The old process's offer, on an open channel."""

    channel: Channel
    node_id: str
    pid: int
    version: str
    incarnation: str
    started_at: float
    sockets: int
    upstreams: list[UpstreamSpec]


async def reach(path: str, terms: Terms, *, version: str) -> Handshake:
    """Connect to the node offering on ``path`` and read its offer."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        async with asyncio.timeout(LIMITS[Step.HELLO]):
            await loop.sock_connect(sock, path)
    except (OSError, TimeoutError) as error:
        sock.close()
        why = "timed out" if isinstance(error, TimeoutError) else _strerror(error)
        raise HandoffError(Step.HELLO.value, f"cannot reach {path}: {why}") from None
    channel = Channel(sock)
    try:
        hello = pb.Hello(terms=encode_terms(terms), pid=os.getpid(), version=version)
        with contextlib.suppress(ChannelClosed):  # a refusal may wait to be read
            await channel.send(pb.Frame(hello=hello))
        frame = await _receive(channel, Step.HELLO)
    except ChannelClosed as closed:
        channel.close()
        raise HandoffError(Step.HELLO.value, f"the running node hung up ({closed})") from None
    except BaseException:
        channel.close()
        raise
    offer = frame.offer
    return Handshake(
        channel=channel,
        node_id=offer.terms.node_id,
        pid=offer.pid,
        version=offer.version,
        incarnation=offer.incarnation,
        started_at=offer.started_at,
        sockets=offer.sockets,
        upstreams=decode_upstreams(offer.upstreams),
    )


class Serving(Protocol):
    """The node's listening ends, as the new side of a handoff needs them."""

    def addresses(self, listener: socket.socket, admin: socket.socket | None) -> None:
        """Say where this node listens (from the inherited sockets); serve nothing yet."""

    async def serve(self, listener: socket.socket, admin: socket.socket | None) -> None:
        """Accept on the inherited sockets."""


@dataclass(slots=True)
class Arriving:
    """A socket received, its session made (not connected: nothing is read before the old
    process lets go)."""

    snapshot: SessionSnapshot
    sock: socket.socket
    session: Session


@dataclass(slots=True)
class Received:
    listener: socket.socket | None = None
    admin: socket.socket | None = None
    sessions: list[Arriving] = field(default_factory=list)
    position: BusPosition = NO_POSITION
    kept: list[SessionSnapshot] = field(default_factory=list)
    replies: list[bytes] = field(default_factory=list)
    frozen_at: float = 0.0
    keys: list[KeyRecord] = field(default_factory=list)

    def close(self) -> None:
        """Give back every descriptor received (the handoff did not happen)."""
        for sock in (self.listener, self.admin):
            if sock is not None:
                sock.close()
        for arriving in self.sessions:
            arriving.sock.close()
        self.sessions.clear()


class TakeOver:
    """This process becomes the node the old process was (see the module's rules)."""

    def __init__(
        self,
        handshake: Handshake,
        *,
        state: NodeState,
        hosting: SessionHosting,
        new_session: Callable[[], Session],
        pool: UpstreamPool,
        router: ReplyRouter,
        endpoint: BusEndpoint,
        commands: SocketCommands,
        upkeep: FleetUpkeep,
        serving: Serving,
        metrics: Metrics,
        upstreams: Iterable[UpstreamSpec],
        max_frame: int,
    ) -> None:
        self.handshake = handshake
        self.channel = handshake.channel
        self.state = state
        self.hosting = hosting
        self.new_session = new_session
        self.pool = pool
        self.router = router
        self.endpoint = endpoint
        self.commands = commands
        self.upkeep = upkeep
        self.serving = serving
        self.metrics = metrics
        self.upstreams = {spec.id: spec for spec in (*handshake.upstreams, *upstreams)}
        self.max_frame = max_frame
        self.stand_ins: dict[str, Session] = {}
        self.outgoing: asyncio.Queue[pb.Relay | None] = asyncio.Queue()
        self.pause: Pause | None = None
        self._relaying: list[asyncio.Task[None]] = []

    async def run(self) -> None:
        """Take everything over, or raise ``HandoffError`` (the old process serves on)."""
        received = Received()
        step = Step.PREPARE
        try:
            await self._prepare()
            await self.channel.send(pb.Frame(ready=pb.Ready(incarnation=self.state.incarnation)))
            step = Step.TRANSFER
            async with asyncio.timeout(LIMITS[Step.TRANSFER]):
                await self._receive_all(received)
            step = Step.COMMIT
            async with asyncio.timeout(LIMITS[Step.COMMIT]):
                await self._commit(received)
            step = Step.RELEASE
            await _receive(self.channel, Step.RELEASE)
        except Exception as error:
            received.close()
            await self._give_up(step, error)
            if isinstance(error, HandoffError):
                raise
            if not isinstance(error, ChannelClosed | TimeoutError | FleetUnavailable | OSError):
                log.exception("handoff: unexpected error at %s", step.value)
            raise HandoffError(step.value, _why(error)) from None
        await self._resume(received)

    async def _give_up(self, step: Step, error: BaseException) -> None:
        with contextlib.suppress(ChannelClosed, OSError, TimeoutError):
            async with asyncio.timeout(1.0):
                refusal = pb.Refusal(reason=f"{step.value}: {_why(error)}")
                await self.channel.send(pb.Frame(refusal=refusal))
        self.channel.close()

    # prepare, receive, commit ---------------------------------------------------------

    async def _prepare(self) -> None:
        for spec in self.upstreams.values():
            self.pool.add(spec)
        if not self.pool.links:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LIMITS[Step.PREPARE]
        settle = loop.time() + max(spec.ready_timeout for spec in self.upstreams.values())
        while True:
            ready = len(self.pool.balancer_members())
            if ready == len(self.pool.links) or (ready and loop.time() >= settle):
                return
            if loop.time() >= deadline:
                raise HandoffError(Step.PREPARE.value, "no upstream became ready here")
            await asyncio.sleep(0.02)

    async def _receive_all(self, received: Received) -> None:
        node_id, incarnation = self.state.node_id, self.state.incarnation
        while True:
            frame, fds = await self.channel.receive()
            body = frame.WhichOneof("body")
            try:
                expect(Step.TRANSFER, body, NEW_EXPECTS)
            except HandoffError:
                _close_all(fds)
                raise
            if body == "refusal":
                raise HandoffError(Step.TRANSFER.value, frame.refusal.reason)
            if body == "listeners":
                socks = [socket.socket(fileno=fd) for fd in fds]
                received.listener = socks.pop(0) if frame.listeners.listener and socks else None
                received.admin = socks.pop(0) if frame.listeners.admin and socks else None
                for extra in socks:
                    extra.close()
            elif body == "sessions":
                if len(fds) != len(frame.sessions.items):
                    _close_all(fds)
                    raise HandoffError(Step.TRANSFER.value, "sockets and states do not match")
                try:
                    snapshots = [
                        decode_session(
                            state,
                            node_id=node_id,
                            incarnation=incarnation,
                            max_frame=self.max_frame,
                        )
                        for state in frame.sessions.items
                    ]
                except HandoffError:
                    _close_all(fds)
                    raise
                for snapshot, fd in zip(snapshots, fds, strict=True):
                    arriving = Arriving(
                        snapshot, socket.socket(fileno=fd), self._prepared(snapshot)
                    )
                    received.sessions.append(arriving)
            elif body == "bus":
                received.position = decode_position(frame.bus)
            else:  # done
                done = frame.done
                received.kept = [
                    decode_session(
                        s, node_id=node_id, incarnation=incarnation, max_frame=self.max_frame
                    )
                    for s in done.kept
                ]
                received.replies = list(done.replies)
                received.frozen_at = done.frozen_at
                received.keys = decode_keys(done.socket_keys)
                if done.moved != len(received.sessions):
                    raise HandoffError(Step.TRANSFER.value, "sockets went missing on the way")
                return

    async def _commit(self, received: Received) -> None:
        if received.listener is None:
            raise HandoffError(Step.COMMIT.value, "no listening socket came")
        self.serving.addresses(received.listener, received.admin)
        await self.upkeep.take_over(self.upstreams.values())
        committed = pb.Committed(incarnation=self.state.incarnation)
        await self.channel.send(pb.Frame(committed=committed))

    # resume -----------------------------------------------------------------------------

    async def _resume(self, received: Received) -> None:
        began = time.monotonic()
        self.commands.keys.restore(received.keys, began)
        direct, routed = self._sort_replies(received)
        moved = await self._adopt(received.sessions, direct)
        adopted = time.monotonic() - began
        for snapshot in received.kept:
            self._stand_in(snapshot)
        await self._start_bus(received.position)
        for reply in routed:
            pending = self.router.receive_reply(reply)
            if pending is not None:
                await pending
        self.pause = Pause(received.frozen_at, time.monotonic())
        assert received.listener is not None
        await self.serving.serve(received.listener, received.admin)
        self.upkeep.start()
        self._relaying += [
            asyncio.create_task(self._relay_out(), name="handoff relay out"),
            asyncio.create_task(self._relay_in(), name="handoff relay in"),
        ]
        self._report(moved, len(received.kept), adopted)

    async def _start_bus(self, position: BusPosition) -> None:
        """Read and send on from the old position; past the point of no return a fleet that
        does not answer is waited for (the sockets are served meanwhile), not given up on."""
        try:
            await self.endpoint.start(position)
        except FleetUnavailable as error:
            log.warning("fleet bus unavailable after the takeover (%s); retrying", error.reason)
            self._relaying.append(asyncio.create_task(self._retry_bus(position)))

    async def _retry_bus(self, position: BusPosition) -> None:
        backoff = Backoff(BUS_RECONNECT)
        while True:
            await asyncio.sleep(backoff.failed())
            try:
                await self.endpoint.start(position)
            except FleetUnavailable:
                continue
            log.info("fleet bus reading again after the takeover")
            return

    def _report(self, moved: int, kept: int, adopted: float) -> None:
        pause = self.pause.seconds if self.pause else 0.0
        self.metrics.handoffs.labels("done").inc()
        self.metrics.handoff_sockets.labels("moved").inc(moved)
        self.metrics.handoff_sockets.labels("kept").inc(kept)
        self.metrics.handoff_pause.observe(pause)
        self.state.last_handoff = {
            "at": time.time(),
            "from_pid": self.handshake.pid,
            "moved": moved,
            "kept": kept,
            "pause_ms": round(pause * 1000, 3),
        }
        log.info(
            "took over from pid %d (version %s): %d sockets moved (adopted in %.0f ms), %d "
            "kept there and drained; pause %.0f ms",
            self.handshake.pid,
            self.handshake.version,
            moved,
            adopted * 1000,
            kept,
            pause * 1000,
        )

    async def adopted(self) -> None:
        """Refresh the fleet's records of the sockets taken over (after ``run``)."""
        with contextlib.suppress(FleetUnavailable):
            stale = await self.upkeep.adopted()
            if stale:
                log.info("removed %d records of sockets that closed during the handoff", stale)

    def _prepared(self, snapshot: SessionSnapshot) -> Session:
        """The session of a socket to adopt, with what it had read (nothing touches the
        socket yet)."""
        session = self.new_session()
        session.info = snapshot.info
        session.peer = snapshot.info.remote if snapshot.proxied else ""
        if snapshot.unframed:
            session.flow.hold(session.framer.feed(snapshot.unframed))
        if snapshot.held:
            session.flow.hold(snapshot.held)
        return session

    def _sort_replies(
        self, received: Received
    ) -> tuple[dict[str, list[bytes]], list[upstream_pb2.OutputStreamRequest]]:
        """The replies the old process kept: those for a socket that moves go to it as it is
        adopted (its client waited for them); the rest are routed once the bus runs."""
        moving = {arriving.snapshot.info.client_uuid for arriving in received.sessions}
        direct: dict[str, list[bytes]] = {}
        routed: list[upstream_pb2.OutputStreamRequest] = []
        for data in received.replies:
            try:
                reply = upstream_pb2.OutputStreamRequest.FromString(data)
            except Exception:
                self.metrics.bad_input.labels("handoff_relay").inc()
                continue
            target = reply.client_uuid if reply.WhichOneof("target") == "client_uuid" else ""
            if target in moving:
                direct.setdefault(target, []).append(reply.payload)
            else:
                routed.append(reply)
        return direct, routed

    async def _adopt(self, sessions: list[Arriving], replies: dict[str, list[bytes]]) -> int:
        """Adopt every socket, ``ADOPT_BATCH`` at a time (the ones adopted first are served
        between two batches: they are the sockets that talk)."""
        adopted = 0
        for start in range(0, len(sessions), ADOPT_BATCH):
            batch = sessions[start : start + ADOPT_BATCH]
            for arriving, connected in zip(batch, await adopt_batch(batch), strict=True):
                if connected is not None:
                    uuid = arriving.snapshot.info.client_uuid
                    self._take(arriving, *connected, replies.get(uuid))
                    adopted += 1
        return adopted

    def _take(
        self,
        arriving: Arriving,
        transport: asyncio.BaseTransport,
        arrival: Arrival,
        replies: list[bytes] | None,
    ) -> None:
        session, snapshot = arriving.session, arriving.snapshot
        transport.set_protocol(session)
        session.connection_made(transport)
        real = session.transport
        if real is None:
            return
        if snapshot.numbered:  # before anything newer of it: what no upstream has yet
            self.pool.resume(snapshot.numbered)
        for reply in snapshot.replies:  # counted when the old process took them
            real.write(reply)
        for payload in replies or ():  # from the old process's links: written here first
            session.write(payload)
        paused = snapshot.info.state is SessionState.PAUSED
        if paused:
            session.set_paused(True)
        for kind, value in arrival.events:
            if kind == "data":
                if paused:
                    session.read_while_paused(value)
                else:
                    session.data_received(value)
            elif kind == "eof":
                if not session.eof_received():
                    real.close()
            else:
                session.connection_lost(value)
        if session.flow.held and not paused and not session.closing:
            self.hosting.submit(session)

    def _stand_in(self, snapshot: SessionSnapshot) -> Session:
        session = self.new_session()
        session.info = snapshot.info
        session.peer = snapshot.info.remote if snapshot.proxied else ""
        client_uuid = snapshot.info.client_uuid
        session.connection_made(RelayTransport(client_uuid, self._send))
        if snapshot.info.state is SessionState.PAUSED:
            session.set_paused(True)
        self.stand_ins[client_uuid] = session
        return session

    async def _route(self, data: bytes) -> None:
        try:
            reply = upstream_pb2.OutputStreamRequest.FromString(data)
        except Exception:
            self.metrics.bad_input.labels("handoff_relay").inc()
            return
        pending = self.router.receive_reply(reply)
        if pending is not None:
            await pending

    # relay ------------------------------------------------------------------------------

    def _send(self, message: pb.Relay) -> None:
        self.outgoing.put_nowait(message)

    async def _relay_out(self) -> None:
        while True:
            message = await self.outgoing.get()
            if message is None:
                return
            try:
                await self.channel.send(pb.Frame(relay=message))
            except (ChannelClosed, OSError):
                return

    async def _relay_in(self) -> None:
        try:
            while True:
                frame, fds = await self.channel.receive()
                _close_all(fds)
                if frame.WhichOneof("body") != "relay":
                    continue
                if not await self._relayed(frame.relay):
                    return
        except (ChannelClosed, HandoffError, OSError):
            return
        finally:
            self._relay_ended()

    async def _relayed(self, relay: pb.Relay) -> bool:
        """Apply one message from the old process; False when it said it is finished."""
        op = relay.WhichOneof("op")
        if op == "reply":
            await self._route(relay.reply)
        elif op == "opened":
            try:
                snapshot = decode_session(
                    relay.opened,
                    node_id=self.state.node_id,
                    incarnation=self.state.incarnation,
                    max_frame=self.max_frame,
                )
            except HandoffError as error:
                log.warning("ignored a kept socket from the old process: %s", error.reason)
                return True
            self.upkeep.sync.added(self._stand_in(snapshot).info)  # type: ignore[arg-type]
        elif op == "unacknowledged":
            item = decode_numbered(relay.unacknowledged)
            self.pool.redeliver_elsewhere([item])
        elif op == "closed":
            session = self.stand_ins.pop(relay.closed, None)
            if session is not None:
                session.connection_lost(None)
        elif op == "finished":
            return False
        return True

    def _relay_ended(self) -> None:
        for session in self.stand_ins.values():
            session.connection_lost(None)
        self.stand_ins.clear()
        self.outgoing.put_nowait(None)

    async def wait_relay(self) -> None:
        """Until the old process is done (it said so, or its connection closed)."""
        if self._relaying:
            await asyncio.wait(self._relaying)
        self.channel.close()

    async def close(self) -> None:
        for task in self._relaying:
            task.cancel()
        if self._relaying:
            await asyncio.wait(self._relaying)
        self.channel.close()

    def __repr__(self) -> str:
        return f"<TakeOver from pid {self.handshake.pid} stand_ins={len(self.stand_ins)}>"


Connected = tuple[asyncio.BaseTransport, Arrival]


async def adopt_batch(batch: list[Arriving]) -> list[Connected | None]:
    """A transport for each socket of ``batch`` (its first protocol an ``Arrival``; None for
    one that could not be adopted, logged), without a task or a loop turn per socket.

    ``loop.connect_accepted_socket`` makes the transport at once and then waits, once, for its
    ``connection_made`` callback. Each call is driven here up to that wait; one loop turn runs
    every callback; each call then finishes. A task per socket (``gather``) costs twice the
    CPU, awaiting each in turn a loop turn per socket (where the adopted sockets' traffic
    runs): 10,000 sockets then take seconds instead of a fraction of one.
    """
    loop = asyncio.get_running_loop()
    started: list[tuple[Arriving, Arrival, Coroutine[Any, Any, Any] | None, Any]] = []
    for arriving in batch:
        arrival = Arrival()
        making = loop.connect_accepted_socket(arrival.itself, arriving.sock)
        try:
            started.append((arriving, arrival, making, making.send(None)))
        except StopIteration as done:  # finished without waiting
            started.append((arriving, arrival, None, done.value))
        except Exception as error:
            _not_adopted(arriving, error)
            started.append((arriving, arrival, None, None))
    await asyncio.sleep(0)  # connection_made of every socket
    made: list[Connected | None] = []
    for arriving, arrival, started_call, value in started:
        call: Coroutine[Any, Any, Any] | None = started_call
        while call is not None:
            if isinstance(value, asyncio.Future) and not value.done():
                await asyncio.wait({value})
            try:
                value = call.send(None)
            except StopIteration as done:
                call, value = None, done.value
            except Exception as error:
                _not_adopted(arriving, error)
                call, value = None, None
        made.append((value[0], arrival) if value is not None else None)
    return made


def _not_adopted(arriving: Arriving, error: BaseException) -> None:
    arriving.sock.close()
    log.warning("socket %s could not be adopted: %r", arriving.snapshot.info.client_uuid, error)


async def _receive(channel: Channel, step: Step) -> pb.Frame:
    async with asyncio.timeout(LIMITS[step]):
        frame, fds = await channel.receive()
    _close_all(fds)
    body = frame.WhichOneof("body")
    expect(step, body, NEW_EXPECTS)
    if body == "refusal":
        if step is Step.HELLO:
            raise HandoffRefused(frame.refusal.reason)
        raise HandoffError(step.value, f"the old process gave up: {frame.refusal.reason}")
    return frame


def _close_all(fds: Iterable[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def _strerror(error: OSError) -> str:
    return (os.strerror(error.errno) if error.errno else str(error)).lower()


def _why(error: BaseException) -> str:
    if isinstance(error, HandoffError):
        return error.reason
    if isinstance(error, TimeoutError):
        return "timed out"
    if isinstance(error, ChannelClosed):
        return f"the old process went away ({error})"
    if isinstance(error, FleetUnavailable):
        return f"fleet unavailable: {error.reason}"
    if isinstance(error, OSError):
        return _strerror(error)
    return str(error) or type(error).__name__
