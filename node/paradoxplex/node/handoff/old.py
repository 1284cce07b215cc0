"""The old process's side of a hot handoff: offer on ``--handoff-socket``, freeze, send,
let go, relay, exit; or thaw and serve on.

Rules (the steps are ``steps.Step``; their limits ``steps.LIMITS``):
- One handoff at a time; a second process that connects meanwhile is refused. The socket file
  is made with mode 0600 and only a process of the same user (or root) is heard.
- ``hello``: the terms must match (``terms.refusal``) and the fleet must answer; else one
  refusal line, counted (``refused``), and nothing else happens.
- ``quiesce`` and ``freeze`` (``freeze.Freezer``): the listener and the admin API stop
  accepting; every plain-TCP socket stops being read, the links' replies are diverted, the
  bus and the fleet copy of the sessions stop; what can be written or sent is, for at most
  ``FLUSH`` seconds; each socket then moves with its state or stays here.
- ``transfer`` (``transfer.send_state``): the listening sockets; each socket that moves with
  its state, those that talk first; the bus position; then ``Done`` with the sockets kept
  here, the replies diverted so far and the idempotency keys of commands on the sockets.
- ``release`` (on ``Committed``, the point of no return): each moved socket's session and
  transport are let go here without a trace (the kernel socket lives on in the new process),
  the socket file is removed, ``Released`` is sent.
- ``relay`` (``relay.Relay``): what the links still receive goes to the new process; kept
  sockets are served here for ``drain_grace`` seconds, then closed; then the links close
  (what an upstream held unacknowledged goes to the new process) and the node stops (exit 0,
  ``handed_over``) without leaving the fleet: the node lives on in the new process.
- Any failure before ``Committed`` is read thaws everything (``Freezer.thaw``) and the node
  serves on; one log line and ``paradoxplex_handoffs_total{outcome}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
import time
from collections.abc import Callable

from paradoxplex.node.fleet.upkeep import FleetStatus
from paradoxplex.node.handoff.channel import Channel, ChannelClosed, peer_uid
from paradoxplex.node.handoff.codec import decode_terms, encode_terms, encode_upstreams
from paradoxplex.node.handoff.freeze import Freezer, Frozen
from paradoxplex.node.handoff.parts import HandoffParts
from paradoxplex.node.handoff.relay import Relay
from paradoxplex.node.handoff.steps import LIMITS, OLD_EXPECTS, Outcome, Step, expect, outcome
from paradoxplex.node.handoff.terms import Terms, refusal
from paradoxplex.node.handoff.transfer import send_state
from paradoxplex.shared.errors import FleetUnavailable, HandoffError, HandoffRefused
from paradoxplex.wire import handoff_pb2 as pb

log = logging.getLogger("paradoxplex.node.handoff")


class HandoffOffer:
    """Offers this node to a successor on ``path`` (see the module's rules)."""

    def __init__(
        self,
        path: str,
        parts: HandoffParts,
        *,
        terms: Terms,
        version: str,
        status: FleetStatus,
        handed_over: Callable[[], None],
        drain_grace: float,
    ) -> None:
        """``handed_over``: everything went, the node stops without leaving the fleet."""
        self.path = path
        self.terms = terms
        self.version = version
        self.state = parts.state
        self.hosting = parts.hosting
        self.pool = parts.pool
        self.commands = parts.commands
        self.status = status
        self.freezer = Freezer(parts)
        self.handed_over = handed_over
        self.metrics = parts.metrics
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
            ready = (await _receive(channel, Step.PREPARE, OLD_EXPECTS)).ready
            frozen.successor = ready.incarnation
            reached = Step.QUIESCE
            async with asyncio.timeout(LIMITS[Step.QUIESCE]):
                await self.freezer.quiesce(frozen)
            reached = Step.FREEZE
            async with asyncio.timeout(LIMITS[Step.FREEZE]):
                await self.freezer.freeze(frozen)
            reached = Step.TRANSFER
            async with asyncio.timeout(LIMITS[Step.TRANSFER]):
                await send_state(
                    channel,
                    frozen,
                    sessions=self.state.sessions,
                    keys=lambda: self.commands.keys.done(time.monotonic()),
                )
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
                await self.freezer.thaw(frozen)
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
            await self.freezer.thaw(frozen)
        self.metrics.handoffs.labels(where.value).inc()
        reason = _reason(error)
        thawed = f"; thawed {len(frozen.captured)} sockets" if where is Outcome.THAWED else ""
        log.warning(
            "handoff to pid %d failed at %s: %s; serving on%s", pid, reached.value, reason, thawed
        )

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
        self.freezer.let_go(frozen)
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
            self.handed_over()

    def __repr__(self) -> str:
        return f"<HandoffOffer {self.path!r} busy={self.busy}>"


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
