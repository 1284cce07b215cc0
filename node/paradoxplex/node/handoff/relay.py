"""The relay of a hot handoff, both sides: after the switch the old process's links still
receive replies, and it still holds the sockets it kept (TLS, closing); the two processes pass
what each needs over the handoff connection until the old one is done.

Rules:
- Old side (``Relay``): what the links still receive goes to the new process (a reply for a
  socket kept here is written here); the new process's writes, pauses, resumes and closes for
  kept sockets are done here; kept sockets that open or close are announced. Kept sockets get
  ``drain_grace`` seconds, then are closed; once none is left, the links were quiet for
  ``RELAY_QUIET`` seconds and no upstream holds a message unacknowledged (the batch
  protocol), the links close: what an upstream still held unacknowledged goes to the new
  process, which delivers it again; ``Relay.finished`` is sent. A reply that finds no new
  process to go to is counted (``HANDOFF_LATE``).
- New side (``StandIns``): replies from the old process's links are routed here; sockets it
  kept have stand-ins here (``RelayTransport``), listed, counted and reached like any other;
  their closes and opens come as messages. The relay ends with ``finished`` or the
  connection; then every stand-in is closed.
- Both sides send through one queue each, in order (``send_queued``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable

from paradoxplex.node.delivery.replies import ReplyRouter
from paradoxplex.node.fleet.session_sync import SessionSync
from paradoxplex.node.handoff.channel import Channel, ChannelClosed, close_fds
from paradoxplex.node.handoff.codec import (
    SessionSnapshot,
    decode_numbered,
    decode_session,
    encode_numbered,
    encode_session,
)
from paradoxplex.node.handoff.freeze import Frozen
from paradoxplex.node.handoff.steps import RELAY_QUIET
from paradoxplex.node.handoff.transports import RelayTransport
from paradoxplex.node.links.pool import UpstreamPool
from paradoxplex.node.links.queue import Outgoing
from paradoxplex.node.metrics import Metrics
from paradoxplex.node.sockets.session import Session
from paradoxplex.node.state import NodeState
from paradoxplex.shared.drops import DropReason
from paradoxplex.shared.errors import HandoffError
from paradoxplex.shared.sessions import SessionState
from paradoxplex.wire import handoff_pb2 as pb
from paradoxplex.wire import upstream_pb2

log = logging.getLogger("paradoxplex.node.handoff")

#: How often the relay looks for kept sockets that opened or closed.
WATCH_INTERVAL = 0.05


async def send_queued(channel: Channel, outgoing: asyncio.Queue[pb.Relay | None]) -> bool:
    """Send what is queued, in order, until a None; False when the connection failed."""
    while True:
        message = await outgoing.get()
        if message is None:
            return True
        try:
            await channel.send(pb.Frame(relay=message))
        except (ChannelClosed, OSError):
            return False


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
        if not await send_queued(self.channel, self.outgoing):
            self.gone = True

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


class StandIns:
    """The new process's end of the relay: the sockets the old process kept, here as
    stand-ins, and what it relays (see the module's rules)."""

    def __init__(
        self,
        channel: Channel,
        *,
        state: NodeState,
        new_session: Callable[[], Session],
        pool: UpstreamPool,
        router: ReplyRouter,
        sync: SessionSync,
        metrics: Metrics,
        max_frame: int,
    ) -> None:
        self.channel = channel
        self.state = state
        self.new_session = new_session
        self.pool = pool
        self.router = router
        self.sync = sync
        self.metrics = metrics
        self.max_frame = max_frame
        self.sessions: dict[str, Session] = {}
        self.outgoing: asyncio.Queue[pb.Relay | None] = asyncio.Queue()

    def add(self, snapshot: SessionSnapshot) -> Session:
        """A stand-in for a socket the old process kept."""
        session = self.new_session()
        session.info = snapshot.info
        session.peer = snapshot.info.remote if snapshot.proxied else ""
        client_uuid = snapshot.info.client_uuid
        session.connection_made(RelayTransport(client_uuid, self._send))
        if snapshot.info.state is SessionState.PAUSED:
            session.set_paused(True)
        self.sessions[client_uuid] = session
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

    async def send(self) -> None:
        """Until the relay ends: what the stand-ins do goes to the old process."""
        await send_queued(self.channel, self.outgoing)

    async def receive(self) -> None:
        """Until the old process says it is finished, or its connection closes."""
        try:
            while True:
                frame, fds = await self.channel.receive()
                close_fds(fds)
                if frame.WhichOneof("body") != "relay":
                    continue
                if not await self._relayed(frame.relay):
                    return
        except (ChannelClosed, HandoffError, OSError):
            return
        finally:
            self._ended()

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
            self.sync.added(self.add(snapshot).info)  # type: ignore[arg-type]
        elif op == "unacknowledged":
            item = decode_numbered(relay.unacknowledged)
            self.pool.redeliver_elsewhere([item])
        elif op == "closed":
            session = self.sessions.pop(relay.closed, None)
            if session is not None:
                session.connection_lost(None)
        elif op == "finished":
            return False
        return True

    def _ended(self) -> None:
        for session in self.sessions.values():
            session.connection_lost(None)
        self.sessions.clear()
        self.outgoing.put_nowait(None)

    def __len__(self) -> int:
        return len(self.sessions)

    def __repr__(self) -> str:
        return f"<StandIns {len(self.sessions)}>"
