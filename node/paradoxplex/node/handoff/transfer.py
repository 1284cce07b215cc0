"""The transfer step of a hot handoff, both ways: the old process sends its listening
sockets, each socket that moves with its state, the bus position and ``Done``; the new process
receives them, checked before anything is used.

Rules:
- ``send_state`` (old): the listening sockets; each socket that moves with its state, as many
  per frame as ``channel.MAX_FDS`` allows and at most ``CHUNK_BYTES`` of state (a larger
  socket goes alone), in the order the freeze left them (those that talk first: the new
  process adopts them in this order, and an idle socket does not notice the pause); the bus
  position; then ``Done`` with the sockets kept there, the replies diverted so far and the
  idempotency keys of commands on the sockets (a retry through the new process replays).
- ``receive_state`` (new): a frame the step does not expect, states and descriptors that do
  not match, a bad record (``codec``) or fewer sockets than ``Done`` says is a
  ``HandoffError``; the descriptors of a bad frame are closed. Each socket's session is made
  (``prepare``) but not connected: nothing is read before the old process lets go.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from paradoxplex.node.handoff.channel import MAX_FDS, Channel, close_fds
from paradoxplex.node.handoff.codec import (
    KeyRecord,
    SessionSnapshot,
    decode_keys,
    decode_position,
    decode_session,
    encode_keys,
    encode_position,
    encode_session,
)
from paradoxplex.node.handoff.freeze import Frozen, Moved
from paradoxplex.node.handoff.steps import NEW_EXPECTS, Step, expect
from paradoxplex.node.handoff.transports import CaptureTransport
from paradoxplex.node.sockets.session import Session
from paradoxplex.shared.errors import HandoffError
from paradoxplex.shared.fleet import NO_POSITION, BusPosition
from paradoxplex.wire import handoff_pb2 as pb

#: Bytes of socket state per frame (a larger socket goes alone).
CHUNK_BYTES = 4 * 1024 * 1024

# the old process sends ---------------------------------------------------------------------


async def send_state(
    channel: Channel,
    frozen: Frozen,
    *,
    sessions: Mapping[str, Session],
    keys: Callable[[], list[KeyRecord]],
) -> None:
    """Everything that moves, in order; ``sessions``: those still held here (a kept one that
    closed meanwhile is not announced); ``keys``: the idempotency records, taken last."""

    listening = [sock.fileno() for sock in (frozen.listener, frozen.admin) if sock]
    listeners = pb.Listeners(listener=frozen.listener is not None, admin=frozen.admin is not None)
    await channel.send(pb.Frame(listeners=listeners), listening)
    for chunk in _chunks(frozen.moved):
        items = [encode_session(moved.snapshot) for moved in chunk]
        fds = [_fileno(moved.capture) for moved in chunk]
        await channel.send(pb.Frame(sessions=pb.Sessions(items=items)), fds)
    await channel.send(pb.Frame(bus=encode_position(frozen.bus or NO_POSITION)))
    kept = [
        encode_session(SessionSnapshot(session.info, proxied=bool(session.peer)))
        for session, _ in frozen.kept
        if session.info is not None and session.client_uuid in sessions
    ]
    frozen.sent = len(frozen.replies)  # kept until the commit: a thaw routes them here
    done = pb.Done(
        moved=len(frozen.moved),
        kept=kept,
        replies=frozen.replies[: frozen.sent],
        frozen_at=frozen.frozen_at,
        socket_keys=encode_keys(keys()),
    )
    await channel.send(pb.Frame(done=done))
    frozen.sent_at = time.monotonic()


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


# the new process receives ------------------------------------------------------------------


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


async def receive_state(
    channel: Channel,
    received: Received,
    *,
    node_id: str,
    incarnation: str,
    max_frame: int,
    prepare: Callable[[SessionSnapshot], Session],
) -> None:
    """Into ``received`` until ``Done``; ``node_id``, ``incarnation``, ``max_frame``: what
    each socket's state must fit; ``prepare``: the session of a socket to adopt."""
    while True:
        frame, fds = await channel.receive()
        body = frame.WhichOneof("body")
        try:
            expect(Step.TRANSFER, body, NEW_EXPECTS)
        except HandoffError:
            close_fds(fds)
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
                close_fds(fds)
                raise HandoffError(Step.TRANSFER.value, "sockets and states do not match")
            try:
                snapshots = [
                    decode_session(
                        state,
                        node_id=node_id,
                        incarnation=incarnation,
                        max_frame=max_frame,
                    )
                    for state in frame.sessions.items
                ]
            except HandoffError:
                close_fds(fds)
                raise
            for snapshot, fd in zip(snapshots, fds, strict=True):
                arriving = Arriving(snapshot, socket.socket(fileno=fd), prepare(snapshot))
                received.sessions.append(arriving)
        elif body == "bus":
            received.position = decode_position(frame.bus)
        else:  # done
            done = frame.done
            received.kept = [
                decode_session(s, node_id=node_id, incarnation=incarnation, max_frame=max_frame)
                for s in done.kept
            ]
            received.replies = list(done.replies)
            received.frozen_at = done.frozen_at
            received.keys = decode_keys(done.socket_keys)
            if done.moved != len(received.sessions):
                raise HandoffError(Step.TRANSFER.value, "sockets went missing on the way")
            return
