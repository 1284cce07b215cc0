"""The new process's side of a hot handoff: reach the old process, prepare, receive, commit,
resume; then hear what the old process relays.

Rules (the steps are ``steps.Step``; their limits ``steps.LIMITS``):
- ``reach`` happens before the node is built: the old process's offer gives the node id
  (when ``--node-id`` was not given), its upstreams and its incarnation. A refusal or an
  unreachable path is a ``HandoffError`` with one line to print; the old process is untouched.
- ``prepare``: a link to every upstream the old process has (and to ``--upstream``), ready
  before anything freezes; at least one must be in rotation within the step's limit unless
  there are none at all.
- ``transfer`` (``transfer.receive_state``): what arrives is checked (``codec``) before
  anything is used; a bad record, a closed connection or an overrun is a ``HandoffError`` (and
  a ``Refusal`` to the old process when it can still hear it): the old one thaws, this process
  exits 1.
- ``commit``: the fleet learns this process is the node (``FleetUpkeep.take_over``: this new
  incarnation claims the id in place of the old process's, which it names as its predecessor
  until ``adopted`` has written every socket's record again: no record is hidden meanwhile),
  then
  ``Committed``; nothing is read or written before ``Released``.
- ``resume``: each socket is adopted (``adoption``: ``loop.connect_accepted_socket``) with
  its state: the bytes not yet framed go back into its framer, its numbered messages (the
  batch protocol) and then its held frames are placed, numbered on from its last number, its
  unwritten replies written first, its pause kept; what arrived before its session took it is
  replayed in order. Then the bus starts from the old position, the replies the old process
  diverted are routed, and the listener, the admin API and the heartbeat start. The
  idempotency keys of commands on the sockets come too: a retry through this process
  replays. The pause (freeze to resume) is measured on the one monotonic clock of the
  machine.
- ``relay`` (``relay.StandIns``): replies from the old process's links are routed here;
  sockets it kept have stand-ins here (``RelayTransport``), listed, counted and reached like
  any other; their closes and opens come as messages. The relay ends with ``finished`` or the
  connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from paradoxplex.node.delivery.replies import ReplyRouter
from paradoxplex.node.handoff.adoption import Adopter
from paradoxplex.node.handoff.channel import Channel, ChannelClosed, close_fds
from paradoxplex.node.handoff.codec import decode_upstreams, encode_terms
from paradoxplex.node.handoff.parts import HandoffParts, Serving
from paradoxplex.node.handoff.relay import StandIns
from paradoxplex.node.handoff.steps import LIMITS, NEW_EXPECTS, Pause, Step, expect
from paradoxplex.node.handoff.terms import Terms
from paradoxplex.node.handoff.transfer import Received, receive_state
from paradoxplex.node.sockets.session import Session
from paradoxplex.shared.errors import FleetUnavailable, HandoffError, HandoffRefused
from paradoxplex.shared.fleet import BusPosition
from paradoxplex.shared.incarnations import BEFORE_INCARNATIONS
from paradoxplex.shared.retry import BUS_RECONNECT, Backoff
from paradoxplex.shared.upstreams import UpstreamSpec
from paradoxplex.wire import handoff_pb2 as pb

log = logging.getLogger("paradoxplex.node.handoff")


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


class TakeOver:
    """This process becomes the node the old process was (see the module's rules)."""

    def __init__(
        self,
        handshake: Handshake,
        parts: HandoffParts,
        *,
        new_session: Callable[[], Session],
        router: ReplyRouter,
        upstreams: Iterable[UpstreamSpec],
        max_frame: int,
    ) -> None:
        """``upstreams``: those of ``--upstream``, linked beside the old process's."""
        self.handshake = handshake
        self.channel = handshake.channel
        self.state = state = parts.state
        self.pool = pool = parts.pool
        self.router = router
        self.endpoint = parts.endpoint
        self.commands = parts.commands
        self.upkeep = upkeep = parts.upkeep
        self.serving: Serving = parts.serving
        self.metrics = metrics = parts.metrics
        self.upstreams = {spec.id: spec for spec in (*handshake.upstreams, *upstreams)}
        self.max_frame = max_frame
        self.adopter = Adopter(
            hosting=parts.hosting, new_session=new_session, pool=pool, metrics=metrics
        )
        self.stand_ins = StandIns(
            handshake.channel,
            state=state,
            new_session=new_session,
            pool=pool,
            router=router,
            sync=upkeep.sync,
            metrics=metrics,
            max_frame=max_frame,
        )
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
                await receive_state(
                    self.channel,
                    received,
                    node_id=self.state.node_id,
                    incarnation=self.state.incarnation,
                    max_frame=self.max_frame,
                    prepare=self.adopter.prepare,
                )
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

    async def _commit(self, received: Received) -> None:
        if received.listener is None:
            raise HandoffError(Step.COMMIT.value, "no listening socket came")
        self.serving.addresses(received.listener, received.admin)
        replacing = self.handshake.incarnation or BEFORE_INCARNATIONS
        await self.upkeep.take_over(self.upstreams.values(), replacing=replacing)
        committed = pb.Committed(incarnation=self.state.incarnation)
        await self.channel.send(pb.Frame(committed=committed))

    # resume -----------------------------------------------------------------------------

    async def _resume(self, received: Received) -> None:
        began = time.monotonic()
        self.commands.keys.restore(received.keys, began)
        direct, routed = self.adopter.sort_replies(received)
        moved = await self.adopter.adopt(received.sessions, direct)
        adopted = time.monotonic() - began
        for snapshot in received.kept:
            self.stand_ins.add(snapshot)
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
            asyncio.create_task(self.stand_ins.send(), name="handoff relay out"),
            asyncio.create_task(self.stand_ins.receive(), name="handoff relay in"),
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

    # relay ------------------------------------------------------------------------------

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


async def _receive(channel: Channel, step: Step) -> pb.Frame:
    async with asyncio.timeout(LIMITS[step]):
        frame, fds = await channel.receive()
    close_fds(fds)
    body = frame.WhichOneof("body")
    expect(step, body, NEW_EXPECTS)
    if body == "refusal":
        if step is Step.HELLO:
            raise HandoffRefused(frame.refusal.reason)
        raise HandoffError(step.value, f"the old process gave up: {frame.refusal.reason}")
    return frame


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
