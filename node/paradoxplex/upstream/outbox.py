"""What a handler sees: the ``Message`` it handles and the ``Outbox`` it answers through.

Rules:
- An ``Outbox`` belongs to one stream: replies go back on the stream the message came from,
  in the order sent; at most ``max_pending`` wait to be sent before the next message waits
  for room (backpressure). One message that makes ``2 * max_pending`` replies raises
  ``OutboxFull``. (Replies sent and not yet acknowledged by the node are the server's: they
  do not hold handlers back, since the node acknowledges them on the same stream.)
- A reply too large for one gRPC message is refused: ``reply`` / ``broadcast`` answer False,
  ``refused`` counts it, a WARNING says so, and the stream goes on.
- Acknowledgements (batch protocol, numbered messages): while a handler runs, its delivery id
  is known (a context variable, so tasks the handler starts carry it too). A reply through
  that message's own outbox to its own socket carries ``cause_seq`` and acknowledges it; any
  other reply or broadcast through that outbox puts the acknowledgement beside it (taken
  with it); a handler that sends nothing there is acknowledged when it returns. So the reply
  of a message never travels after its acknowledgement.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from paradoxplex.shared.batches import BatchLimits
from paradoxplex.shared.timestamps import timestamp
from paradoxplex.wire import upstream_pb2 as pb

log = logging.getLogger("paradoxplex.upstream")

BROADCASTS = {
    "all": pb.BROADCAST_ALL,
    "active": pb.BROADCAST_ACTIVE,
    "paused": pb.BROADCAST_NOT_ACTIVE,
    "inactive": pb.BROADCAST_NOT_ACTIVE,  # the original's word for paused
}
BATCH_LIMITS = BatchLimits()
MAX_PENDING = 10_000  # replies an upstream holds for the node before its handler waits


class OutboxFull(Exception):
    """One message made a handler queue ``max_pending`` more replies. (While ``max_pending``
    replies wait for the node, the next message waits too: that is backpressure, no error.)"""


@dataclass(frozen=True, slots=True)
class Message:
    """One message from a socket, or a lifecycle event (``event`` set, empty payload).
    ``seq`` and ``attempt``: its delivery id's number within its socket and how many times
    the node delivered it (0 and 0 when the node does not number messages)."""

    client_uuid: str
    payload: bytes
    time: str
    event: str = ""  # "", "connected" or "disconnected"
    remote_address: str = ""
    node_id: str = ""
    reason: str = ""
    seq: int = 0
    attempt: int = 0

    @classmethod
    def from_request(cls, request: pb.InputStreamRequest) -> Message:
        if not request.HasField("event"):
            if request.seq:
                return cls(
                    request.client_uuid,
                    request.payload,
                    request.time,
                    "",
                    "",
                    "",
                    "",
                    request.seq,
                    request.attempt or 1,
                )
            return cls(request.client_uuid, request.payload, request.time)
        event = request.event
        kind = {pb.SocketEvent.CONNECTED: "connected", pb.SocketEvent.DISCONNECTED: "disconnected"}
        return cls(
            request.client_uuid,
            request.payload,
            request.time,
            kind.get(event.kind, "unknown"),
            event.remote_address,
            event.node_id,
            event.reason,
            request.seq,
            (request.attempt or 1) if request.seq else 0,
        )


@dataclass(slots=True)
class Taken:
    """What the stream's writer takes at once: replies, acknowledgements and notices."""

    items: list[pb.OutputStreamRequest] = field(default_factory=list)
    acks: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    draining: bool = False
    probes: int = 0


#: The delivery a handler runs for: its stream's outbox and delivery id. One tuple per
#: message, set in the consumer's context (tasks a handler starts copy it), never reset: a
#: stale one (its handler returned) only ever names a message already acknowledged.
Handling = tuple["Outbox", str, int]
HANDLING: contextvars.ContextVar[Handling | None] = contextvars.ContextVar(
    "paradoxplex_handling", default=None
)


Handler = Callable[[Message, "Outbox"], Awaitable[None] | None]


class Outbox:
    """Replies of one stream, bounded, with the acknowledgements (see the module's rules)."""

    def __init__(
        self, max_pending: int = MAX_PENDING, *, limits: BatchLimits = BATCH_LIMITS
    ) -> None:
        self.max_pending = max_pending
        self.limits = limits
        self.items: list[pb.OutputStreamRequest] = []
        self.acks: dict[str, int] = {}
        self.duplicates = 0
        self.refused = 0
        self.probes = 0
        self.closed = False
        self.draining = False  # to tell the node, once
        self._kicked = False
        #: the last delivery acknowledged by a reply (or beside one): its handler's return
        #: needs no acknowledgement of its own
        self.answered: Handling | None = None
        self._wakeup = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()

    # for handlers -------------------------------------------------------------------------

    def reply(self, client_uuid: str, payload: bytes) -> bool:
        """Send ``payload`` to one socket, whichever node holds it; False when the reply is
        too large for one gRPC message (refused, counted in ``refused``, logged)."""
        handling = HANDLING.get()
        if handling is None or handling[0] is not self:
            item = pb.OutputStreamRequest(time=now_text(), client_uuid=client_uuid, payload=payload)
            return self._put(item)
        if client_uuid == handling[1]:
            item = pb.OutputStreamRequest(
                time=now_text(), client_uuid=client_uuid, payload=payload, cause_seq=handling[2]
            )
            if not self._put(item):
                return False
            self.answered = handling
            return True
        item = pb.OutputStreamRequest(time=now_text(), client_uuid=client_uuid, payload=payload)
        if not self._put(item):
            return False
        self.acknowledge(handling)
        return True

    def broadcast(self, payload: bytes, *, target: str = "all", label: str = "") -> bool:
        """Send to every socket (``all``), the ``active`` or the ``paused`` ones (``inactive``,
        the original's word, is ``paused``), fleet-wide;
        False when refused as too large (see ``reply``)."""
        item = pb.OutputStreamRequest(
            time=now_text(), broadcast=BROADCASTS[target], payload=payload, broadcast_label=label
        )
        if not self._put(item):
            return False
        handling = HANDLING.get()
        if handling is not None and handling[0] is self:
            self.acknowledge(handling)
        return True

    # for the server's streams (not for handlers) ------------------------------------------

    def _put(self, item: pb.OutputStreamRequest) -> bool:
        size = item.ByteSize()
        if not self.limits.fits(size):
            self.refused += 1
            log.warning(
                "refused a reply of %d bytes (to %s): over the %d-byte limit of one gRPC message",
                size,
                item.client_uuid or "a broadcast",
                self.limits.max_single,
            )
            return False
        if len(self.items) >= 2 * self.max_pending:  # one message made max_pending replies
            raise OutboxFull(f"{len(self.items)} replies pending")
        self.items.append(item)
        self._wakeup.set()
        if len(self.items) >= self.max_pending:
            self._room.clear()
        return True

    def started(self, client_uuid: str, seq: int) -> Handling:
        """A handler starts on delivery ``(client_uuid, seq)`` (in this context)."""
        handling = (self, client_uuid, seq)
        HANDLING.set(handling)
        return handling

    def finished(self, handling: Handling) -> None:
        """The handler returned: acknowledge its message unless a reply did."""
        if self.answered is not handling:
            self.acknowledge(handling)

    def acknowledge(self, handling: Handling) -> None:
        """Acknowledge the delivery ``handling`` names, with the next replies."""
        self.acks[handling[1]] = handling[2]
        self.answered = handling
        self._wakeup.set()

    def duplicate(self, client_uuid: str, seq: int) -> None:
        """A redelivery already finished here: acknowledged, counted, not run."""
        self.acks[client_uuid] = seq
        self.duplicates += 1
        self._wakeup.set()

    def probed(self) -> None:
        self.probes += 1
        self._wakeup.set()

    def tell_draining(self) -> None:
        self.draining = True
        self._wakeup.set()

    def kick(self) -> None:
        """Wake the writer with nothing to take (it checks whether a drain is complete)."""
        self._kicked = True
        self._wakeup.set()

    def close(self) -> None:
        self.closed = True
        self._wakeup.set()

    def refresh_room(self) -> None:
        if len(self.items) < self.max_pending:
            self._room.set()

    def full(self) -> bool:
        return len(self.items) >= self.max_pending

    async def room(self) -> None:
        """Wait until fewer than ``max_pending`` replies wait to be sent."""
        while self.full():
            self._room.clear()
            await self._room.wait()

    @property
    def empty(self) -> bool:
        """Nothing to send: no reply, acknowledgement or notice."""
        return not (self.items or self.acks or self.duplicates or self.draining or self.probes)

    async def wait_room(self) -> None:
        await self._room.wait()

    async def take(self) -> Taken | None:
        """What is pending (waiting for something, or a kick); None once closed and empty."""
        while self.empty:
            if self._kicked:
                self._kicked = False
                return Taken()
            if self.closed:
                return None
            self._wakeup.clear()
            await self._wakeup.wait()
        taken = Taken(self.items, self.acks, self.duplicates, self.draining, self.probes)
        self.items, self.acks = [], {}
        self.duplicates = self.probes = 0
        self.draining = False
        self._kicked = False
        self.refresh_room()
        return taken

    def __repr__(self) -> str:
        return f"<Outbox items={len(self.items)} acks={len(self.acks)} closed={self.closed}>"


def now_text() -> str:
    return timestamp(time.time())
