"""The new process adopts the sockets of a hot handoff: each socket becomes a session here,
with the state it had in the old process.

Rules:
- A socket's session is made as it arrives (``prepare``), with what it had read: the bytes
  not yet framed go back into its framer, then its held frames; nothing touches the socket
  before the old process lets go.
- The replies the old process kept (``sort_replies``): those for a socket that moves are
  written to it as it is adopted (its client waited for them); the rest are routed once the
  bus runs. A reply that does not parse is counted (``bad_input{handoff_relay}``).
- ``adopt``: ``ADOPT_BATCH`` sockets at a time (``loop.connect_accepted_socket``, no task
  per socket), in the order they came (those that talk first); the event loop serves the
  adopted ones between two batches. Each socket's numbered messages (the batch protocol) are
  placed before anything newer of it, its unwritten replies written first, its pause kept;
  what arrived before its session took it is replayed in order; what it holds is submitted.
  A socket that cannot be adopted is closed and logged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from paradoxplex.node.handoff.codec import SessionSnapshot
from paradoxplex.node.handoff.transfer import Arriving, Received
from paradoxplex.node.handoff.transports import Arrival
from paradoxplex.node.links.pool import UpstreamPool
from paradoxplex.node.metrics import Metrics
from paradoxplex.node.sockets.hosting import SessionHosting
from paradoxplex.node.sockets.session import Session
from paradoxplex.shared.sessions import SessionState
from paradoxplex.wire import upstream_pb2

log = logging.getLogger("paradoxplex.node.handoff")

#: Sockets adopted at once; the event loop serves the adopted ones between two batches.
ADOPT_BATCH = 256


class Adopter:
    """Makes this process's sessions of the sockets that move (see the module's rules)."""

    def __init__(
        self,
        *,
        hosting: SessionHosting,
        new_session: Callable[[], Session],
        pool: UpstreamPool,
        metrics: Metrics,
    ) -> None:
        self.hosting = hosting
        self.new_session = new_session
        self.pool = pool
        self.metrics = metrics

    def prepare(self, snapshot: SessionSnapshot) -> Session:
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

    def sort_replies(
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

    async def adopt(self, sessions: list[Arriving], replies: dict[str, list[bytes]]) -> int:
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

    def __repr__(self) -> str:
        return f"<Adopter batch={ADOPT_BATCH}>"


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
