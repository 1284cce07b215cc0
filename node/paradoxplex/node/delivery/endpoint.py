"""This node's end of the fleet bus: what it sends to other nodes and what it does with
what they send.

Rules:
- Out (``BusOutbox``, made before the reply router that sends through it): replies for
  sockets on other nodes go through the ``Courier`` (one queue per owner node, batched);
  broadcasts are published once. ``BusEndpoint`` is made after the parts it hands what comes
  in to (the reply router, the socket commands, the upkeep's reconcile and resync): ``start``
  only starts listening. It announces upstream-registry changes, once.
- In: every envelope is decoded here once; an undecodable one is counted
  (``paradoxplex_bad_input_total{kind="bus_envelope"}``) and dropped. Forwarded replies and
  broadcasts go to the reply router; admin commands are answered in a task of their own
  (the bus reads inline: keep the handler quick); control envelopes trigger a reconcile.
- Admin request/reply: ``request`` waits at most ``owner_timeout`` seconds for the owner's
  answer, else ``OwnerTimeout`` whose ``outcome`` is the truth this node knows: ``not_applied``
  when the command never left (the bus never began to write it: it waited behind others for
  a stopped Redis, or its node is dead), else ``unknown`` (it may sit in a stopped Redis and
  reach the owner later, or the owner acted and its answer was lost): the caller retries with
  the same idempotency key, and the owner's record of the key replays instead of acting.
  The command carries the key, and a deadline ``COMMAND_MARGIN`` before the asker gives up:
  an owner that reads it later drops it (counted), which spares a caller that does not retry
  a late action; nothing relies on it (the clocks of two nodes differ).
- ``locate`` asks every other node at once whether it holds a socket the fleet state does not
  know (it connected a moment ago, or Redis came back empty and is being refilled); it stops
  at the first owner, or when every node it expects has said no (``Located.complete``: the
  socket is nowhere), or after ``LOCATE_TIMEOUT`` (``Located.silent``: the expected nodes
  that did not answer; the socket may exist).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from paradoxplex.node.delivery.commands import Answer
from paradoxplex.node.delivery.courier import Courier
from paradoxplex.node.metrics import Metrics
from paradoxplex.node.tasks import TaskSet
from paradoxplex.shared import envelopes
from paradoxplex.shared.drops import DropReason
from paradoxplex.shared.errors import FleetUnavailable, OwnerTimeout
from paradoxplex.shared.fleet import NO_POSITION, BusPosition, FleetBus
from paradoxplex.shared.idempotency import Once
from paradoxplex.shared.sessions import BroadcastTarget, parse_target
from paradoxplex.wire import bus_pb2

log = logging.getLogger("paradoxplex.node.delivery")

COMMAND_MARGIN = 0.5
LOCATE_TIMEOUT = 1.0
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Located:
    """What asking the other nodes about a socket found: the ``owner`` and its ``record``
    (orjson); or nobody, ``complete`` when every node expected said no, else with the
    expected nodes that did not answer in time (``silent``)."""

    owner: str | None = None
    record: bytes = b""
    complete: bool = False
    silent: frozenset[str] = frozenset()


class Deliveries(Protocol):
    """Where replies and broadcasts from other nodes go (the reply router)."""

    def deliver_forwarded(self, items: Iterable[bus_pb2.Deliver]) -> None: ...

    def deliver_broadcast(
        self, target: BroadcastTarget, label: tuple[str, str] | None, payload: bytes
    ) -> None: ...


class Commands(Protocol):
    """Who answers admin commands for sockets held here."""

    async def apply(self, command: bus_pb2.Command) -> Answer: ...


class BusOutbox:
    """What this node sends on the bus without waiting for an answer: replies for sockets
    on other nodes, and broadcasts. ``on_undelivered(node_id)``: replies to that node were
    not taken (forget where its sockets are)."""

    def __init__(
        self,
        bus: FleetBus,
        *,
        node_id: str,
        metrics: Metrics,
        on_undelivered: Callable[[str], None],
    ) -> None:
        self.bus = bus
        self.node_id = node_id
        self.metrics = metrics
        self.courier = Courier(bus, metrics, sender=node_id, on_undelivered=on_undelivered)

    async def close(self) -> None:
        await self.courier.close()

    def forward_nowait(self, node_id: str, client_uuid: str, payload: bytes) -> bool:
        return self.courier.send_nowait(node_id, client_uuid, payload)

    async def forward(self, node_id: str, client_uuid: str, payload: bytes) -> None:
        await self.courier.send(node_id, client_uuid, payload)

    async def publish_broadcast(
        self, target: BroadcastTarget, label: tuple[str, str] | None, payload: bytes
    ) -> None:
        data = envelopes.broadcast(self.node_id, target, label, payload, sent_at=time.time())
        try:
            await self.bus.broadcast(data)
            self.metrics.bus_messages.labels("out").inc()
        except FleetUnavailable:
            self.metrics.fleet_errors.inc()
            self.metrics.drops.labels(DropReason.FLEET_UNAVAILABLE).inc()

    def __repr__(self) -> str:
        return f"<BusOutbox {self.node_id} {self.courier!r}>"


class BusEndpoint:
    """Listens on the bus for this node; asks other nodes and waits for their answers."""

    def __init__(
        self,
        bus: FleetBus,
        *,
        outbox: BusOutbox,
        deliveries: Deliveries,
        commands: Commands,
        on_control: Callable[[bus_pb2.Control], Awaitable[None]],
        on_reconnect: Callable[[], Awaitable[None]],
        node_id: str,
        metrics: Metrics,
        tasks: TaskSet,
        owner_timeout: float,
        holds_id: Callable[[], bool] = lambda: True,
    ) -> None:
        self.bus = bus
        self.holds_id = holds_id
        self.outbox = outbox
        self.deliveries = deliveries
        self.commands = commands
        self.on_control = on_control
        self.on_reconnect = on_reconnect
        self.node_id = node_id
        self.metrics = metrics
        self.tasks = tasks
        self.owner_timeout = owner_timeout
        metrics.watch_bus(bus.stats)
        self._pending: dict[str, asyncio.Future[bus_pb2.CommandReply]] = {}
        self._gathering: dict[str, asyncio.Queue[tuple[str, bus_pb2.CommandReply]]] = {}
        self.answering = 0  # commands from other nodes being answered now

    @property
    def connected(self) -> bool:
        return self.bus.connected

    async def start(self, position: BusPosition = NO_POSITION) -> None:
        """Start listening (from a predecessor's ``position``: a hot handoff); raises
        ``FleetUnavailable`` when the bus cannot be reached."""
        await self.bus.start(
            self.node_id, self.receive, on_reconnect=self.on_reconnect, position=position
        )

    @property
    def idle(self) -> bool:
        """No command being answered, no forwarded reply waiting to be sent."""
        return not self.answering and self.outbox.courier.idle

    async def pause(self, *, within: float) -> BusPosition:
        """A hot handoff: stop reading; within ``within`` seconds, answer what was read and
        send what waits to be forwarded (else ``TimeoutError``); stop sending; the position
        a successor goes on from."""

        async def settle() -> None:
            async with asyncio.timeout(within):
                while not self.idle:  # noqa: ASYNC110 - bounded by the timeout
                    await asyncio.sleep(0.005)

        return await self.bus.pause(settle)

    async def resume(self) -> None:
        """The handoff did not happen: read and send again."""
        await self.bus.resume()

    async def close(self, *, keep_inbox: bool = False) -> None:
        await self.outbox.close()
        await self.bus.close(keep_inbox=keep_inbox)

    # out --------------------------------------------------------------------------------

    async def announce(self, upstream_id: str) -> None:
        """Tell every node (this one too) that the upstream registry changed."""
        await self.bus.control(envelopes.control(self.node_id, "reconcile", upstream_id))

    async def request(
        self,
        owner: str,
        action: str,
        client_uuid: str,
        *,
        payload: bytes = b"",
        labels: dict[str, str] | None = None,
        once: Once | None = None,
    ) -> Answer:
        """Have the owner node act on its socket: its ``SocketCommands``' answer. This node
        answers at once; another within ``owner_timeout``, or ``OwnerTimeout``."""
        command = bus_pb2.Command(
            request_id=uuid.uuid4().hex,
            action=action,
            client_uuid=client_uuid,
            payload=payload,
            labels=labels or {},
            idempotency_key=once.key if once else "",
            fingerprint=once.fingerprint if once else b"",
        )
        if owner == self.node_id:
            return await self.commands.apply(command)
        command.deadline = (
            time.time() + self.owner_timeout - min(COMMAND_MARGIN, self.owner_timeout / 2)
        )
        reply = await self._ask(owner, command)
        return Answer(reply.status, reply.body, reply.replayed)

    async def _ask(self, owner: str, command: bus_pb2.Command) -> bus_pb2.CommandReply:
        """Over the bus; ``OwnerTimeout`` when no answer came within ``owner_timeout``,
        ``not_applied`` when the bus never began to write the command."""
        future: asyncio.Future[bus_pb2.CommandReply] = asyncio.get_running_loop().create_future()
        self._pending[command.request_id] = future
        data = bus_pb2.Envelope(sender=self.node_id, command=command).SerializeToString()
        written = False

        def writing() -> None:
            nonlocal written
            written = True

        def timeout() -> OwnerTimeout:
            error = OwnerTimeout(command.client_uuid, owner)
            return error if written else error.not_applied()

        deadline = asyncio.get_running_loop().time() + self.owner_timeout
        try:
            async with asyncio.timeout_at(deadline):
                if not await self.bus.send(owner, data, on_write=writing):
                    raise timeout()
            return await _by(future, deadline)
        except TimeoutError:
            raise timeout() from None
        except FleetUnavailable as error:  # held through an outage longer than the bus holds
            raise error if written else error.not_applied() from None
        finally:
            self._pending.pop(command.request_id, None)

    async def locate(self, client_uuid: str, *, expected: set[str] | None) -> Located:
        """Ask every other node whether it holds ``client_uuid``: its owner and record, or
        nobody (``complete`` once every node in ``expected`` said no; None: nodes unknown,
        never complete). Raises ``FleetUnavailable`` when the question cannot be sent."""
        request_id = uuid.uuid4().hex
        answers: asyncio.Queue[tuple[str, bus_pb2.CommandReply]] = asyncio.Queue()
        self._gathering[request_id] = answers
        question = envelopes.command(
            self.node_id,
            request_id,
            "get",
            client_uuid,
            deadline=time.time() + LOCATE_TIMEOUT - min(COMMAND_MARGIN, LOCATE_TIMEOUT / 2),
        )
        denied: set[str] = set()
        deadline = asyncio.get_running_loop().time() + LOCATE_TIMEOUT
        try:
            async with asyncio.timeout_at(deadline):
                await self.bus.broadcast(question)
            while expected is None or not expected <= denied:
                sender, reply = await _by(answers.get(), deadline)
                if reply.status == "ok":
                    return Located(sender, reply.body)
                denied.add(sender)
            return Located(complete=True)
        except TimeoutError:
            log.debug(
                "locate %s: %d node(s) said no, the others did not answer", client_uuid, len(denied)
            )
        finally:
            self._gathering.pop(request_id, None)
        return Located(silent=frozenset((expected or set()) - denied))

    # in ---------------------------------------------------------------------------------

    async def receive(self, data: bytes) -> None:
        try:
            envelope = envelopes.parse(data)
        except Exception:
            self.metrics.bad_input.labels("bus_envelope").inc()
            log.warning("dropped an undecodable bus envelope of %d bytes", len(data))
            return
        self.metrics.bus_messages.labels("in").inc()
        body = envelope.WhichOneof("body")
        if envelope.sent_at and body in ("deliver_batch", "broadcast"):
            self.metrics.bus_delivery.observe(max(0.0, time.time() - envelope.sent_at))
        if body == "deliver_batch":
            self.deliveries.deliver_forwarded(envelope.deliver_batch.items)
        elif body == "broadcast" and envelope.sender != self.node_id:
            self._receive_broadcast(envelope.broadcast)
        elif body == "command":
            self.tasks.spawn(self._answer(envelope.sender, envelope.command), "answer command")
        elif body == "reply":
            self._receive_reply(envelope.sender, envelope.reply)
        elif body == "control":
            self.tasks.spawn(self.on_control(envelope.control), "fleet control")

    def _receive_reply(self, sender: str, reply: bus_pb2.CommandReply) -> None:
        future = self._pending.pop(reply.request_id, None)
        if future is not None and not future.done():
            future.set_result(reply)
            return
        answers = self._gathering.get(reply.request_id)
        if answers is not None:
            answers.put_nowait((sender, reply))

    def _receive_broadcast(self, message: bus_pb2.Broadcast) -> None:
        try:
            target = parse_target(message.target)
        except ValueError:
            self.metrics.bad_input.labels("bus_envelope").inc()
            return
        self.deliveries.deliver_broadcast(
            target, envelopes.label_from_wire(message.label), message.payload
        )

    async def _answer(self, sender: str, command: bus_pb2.Command) -> None:
        self.answering += 1
        try:
            await self._answer_now(sender, command)
        finally:
            self.answering -= 1

    async def _answer_now(self, sender: str, command: bus_pb2.Command) -> None:
        if not self.holds_id():  # another incarnation holds this node id now: it answers
            return
        if command.deadline and time.time() > command.deadline:
            self.metrics.drops.labels(DropReason.COMMAND_EXPIRED).inc()
            log.warning(
                "admin command %s for socket %s arrived after its requester gave up; dropped",
                command.action,
                command.client_uuid,
            )
            return
        answer = await self.commands.apply(command)
        reply = envelopes.reply(
            self.node_id,
            command.request_id,
            answer.status,
            answer.body,
            replayed=answer.replayed,
        )
        try:
            await self.bus.send(sender, reply)
        except FleetUnavailable:
            self.metrics.fleet_errors.inc()

    def __repr__(self) -> str:
        return (
            f"<BusEndpoint {self.node_id} connected={self.connected} "
            f"pending={len(self._pending)} {self.outbox!r}>"
        )


async def _by(awaited: Awaitable[T], deadline: float) -> T:
    """``awaited``'s result if it comes before ``deadline`` (loop time), else TimeoutError.
    Its own timer, not a cancel of this task: redis-py can swallow a cancel that lands in
    one of its reads (the send before), and a wait behind it would then never end."""
    remaining = deadline - asyncio.get_running_loop().time()
    return await asyncio.wait_for(awaited, max(0.0, remaining))
