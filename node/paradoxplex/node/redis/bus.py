"""The fleet bus on Redis pub/sub: how the nodes of a fleet talk.

Channels (names from ``Keys(prefix)``): ``chan:node:<id>`` one per node, ``chan:broadcast``
(every node but the sender), ``chan:control`` (every node, the sender included).

Rules:
- The bus is built whole before any node exists (client, prefix, ``is_alive``); ``start``
  gives it the node id, the envelope handler and ``on_reconnect``. It never asks which Redis
  mode its ``FleetClient`` speaks to.
- Receiving is the ``Subscriber``'s job (one watched connection, resubscribed on loss);
  ``connected`` is whether that subscription stands now.
- A broadcast travels as ``<len><sender id><envelope>`` so that its sender skips it; the
  handler always gets the bare envelope.
- ``send``: while PUBLISH answers 0 receivers, retry with backoff until ``send_deadline`` or
  until ``is_alive`` says the node is dead, then return False (counted, one WARNING per stall).
  One retry loop per stalled node: later envelopes for it wait behind it (no retry storm) and,
  once it gave up, fail after one more PUBLISH each.
- Order: envelopes sent one after another (each ``send`` awaited, or one ``publish_many``)
  arrive in that order, stall or not. Concurrent sends to one node have no order (they may
  travel on different connections).
- A PUBLISH that fails raises ``FleetUnavailable`` (``errors.edge``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from paradoxplex.node.redis.client import FleetClient, connect
from paradoxplex.node.redis.errors import edge
from paradoxplex.node.redis.subscriber import Subscriber
from paradoxplex.shared.fleet import EnvelopeHandler, ReconnectHandler
from paradoxplex.shared.keys import Keys

__all__ = ["AliveCheck", "RedisBus"]

_log = logging.getLogger("paradoxplex.node.fleet")

AliveCheck = Callable[[str], Awaitable[bool]]

_FIRST_RETRY = 0.02
_MAX_RETRY = 0.25


@dataclass(slots=True)
class _Stall:
    """A node that did not listen: envelopes for it wait here, one sender at a time."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0
    gave_up: bool = False


class RedisBus:
    """The fleet bus on Redis pub/sub.

    ``is_alive(node_id)`` lets ``send`` stop waiting for a node known to be dead.
    ``send_deadline`` (default 5 s) bounds how long ``send`` waits for a node to listen.
    ``ping_interval`` (default 1 s): an idle subscription is PINGed, and declared lost when two
    intervals pass in silence. ``max_backoff`` (default 1 s) caps the wait between
    reconnection attempts. ``client`` may be injected (then it is the caller's to close,
    unless ``owns_client``); ``from_url`` builds one and closes it in ``close``.

    The handler runs on the subscriber task, one envelope at a time: keep it quick (hand off
    to a bounded queue). While it runs nothing is read, and Redis drops a subscriber whose
    backlog outgrows its ``client-output-buffer-limit pubsub`` (then: reconnect, on_reconnect).
    """

    def __init__(
        self,
        client: FleetClient,
        *,
        prefix: str,
        is_alive: AliveCheck | None = None,
        send_deadline: float = 5.0,
        ping_interval: float = 1.0,
        max_backoff: float = 1.0,
        owns_client: bool = False,
    ) -> None:
        self.keys = Keys(prefix)
        self.node_id = ""
        self.undelivered = 0
        self.client = client
        self._redis = client.redis
        self._owns_client = owns_client
        self._is_alive = is_alive
        self._send_deadline = send_deadline
        self._ping_interval = ping_interval
        self._max_backoff = max_backoff
        self._broadcast = self.keys.broadcast_channel
        self._control = self.keys.control_channel
        self._self_tag = b"\x00"
        self._stalls: dict[str, _Stall] = {}
        self._subscriber: Subscriber | None = None

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str,
        is_alive: AliveCheck | None = None,
        send_deadline: float = 5.0,
        ping_interval: float = 1.0,
        max_backoff: float = 1.0,
    ) -> RedisBus:
        return cls(
            connect(url),
            prefix=prefix,
            is_alive=is_alive,
            send_deadline=send_deadline,
            ping_interval=ping_interval,
            max_backoff=max_backoff,
            owns_client=True,
        )

    @property
    def connected(self) -> bool:
        """True while the subscription stands (False before ``start`` and after ``close``)."""
        return self._subscriber is not None and self._subscriber.connected

    @property
    def reconnects(self) -> int:
        return 0 if self._subscriber is None else self._subscriber.reconnects

    @property
    def handler_errors(self) -> int:
        return 0 if self._subscriber is None else self._subscriber.handler_errors

    # -- lifecycle -----------------------------------------------------------------------

    async def start(
        self,
        node_id: str,
        handler: EnvelopeHandler,
        *,
        on_reconnect: ReconnectHandler | None = None,
    ) -> None:
        """Subscribe (raises ``FleetUnavailable`` when Redis does not answer), then listen.
        ``on_reconnect()`` is awaited, in a task of its own, after every reconnection once
        the subscriptions are back: re-register what Redis may have lost."""
        if self._subscriber is not None:
            raise RuntimeError("RedisBus already started")
        sender = node_id.encode()
        if not 0 < len(sender) < 256:
            raise ValueError("a node id must be 1 to 255 bytes long")
        self.node_id = node_id
        self._self_tag = bytes([len(sender)]) + sender
        channels = (self.keys.node_channel(node_id), self._broadcast, self._control)
        subscriber = Subscriber(
            self.client,
            name=node_id,
            channels=tuple(channel.encode() for channel in channels),
            own_tag=self._self_tag,
            handler=handler,
            on_reconnect=on_reconnect,
            ping_interval=self._ping_interval,
            max_backoff=self._max_backoff,
        )
        await subscriber.start()
        self._subscriber = subscriber

    async def close(self) -> None:
        if self._subscriber is not None:
            await self._subscriber.close()
        if self._owns_client:
            await self.client.close()
        await asyncio.sleep(0)  # let closed transports finish closing

    # -- publishing ----------------------------------------------------------------------

    async def send(self, node_id: str, envelope: bytes) -> bool:
        """Deliver to one node; False (counted, logged) when it did not listen in time."""
        channel = self.keys.node_channel(node_id)
        if node_id not in self._stalls and await self._publish(channel, envelope):
            return True
        return await self._send_stalled(node_id, channel, [envelope])

    async def publish_many(self, node_id: str, envelopes: list[bytes]) -> bool:
        """``send`` for a batch, in one round trip; True when every envelope was delivered."""
        if not envelopes:
            return True
        channel = self.keys.node_channel(node_id)
        pending = envelopes
        if node_id not in self._stalls:
            pending = await self._publish_each(channel, envelopes)
            if not pending:
                return True
        return await self._send_stalled(node_id, channel, pending)

    async def broadcast(self, envelope: bytes) -> None:
        """Publish once for every other node (the sender skips its own broadcasts)."""
        await self._publish(self._broadcast, self._self_tag + envelope)

    async def control(self, envelope: bytes) -> None:
        """Publish once for every node, this one included."""
        await self._publish(self._control, envelope)

    @edge
    async def _publish(self, channel: str, data: bytes) -> int:
        return int(await self._redis.publish(channel, data))

    @edge
    async def _publish_each(self, channel: str, envelopes: list[bytes]) -> list[bytes]:
        """Publish in order; return the envelopes nobody received."""
        if len(envelopes) == 1:
            return [] if await self._redis.publish(channel, envelopes[0]) else envelopes
        async with self._redis.pipeline(transaction=False) as pipe:
            for envelope in envelopes:
                pipe.publish(channel, envelope)
            counts = await pipe.execute()
        return [envelope for envelope, count in zip(envelopes, counts, strict=True) if not count]

    async def _send_stalled(self, node_id: str, channel: str, envelopes: list[bytes]) -> bool:
        stall = self._stalls.get(node_id)
        if stall is None:
            stall = self._stalls[node_id] = _Stall()
        stall.users += 1
        try:
            async with stall.lock:
                delivered = await self._deliver(
                    node_id, channel, envelopes, patient=not stall.gave_up
                )
                stall.gave_up = not delivered
                return delivered
        finally:
            stall.users -= 1
            if stall.users == 0:
                del self._stalls[node_id]

    async def _deliver(
        self, node_id: str, channel: str, envelopes: list[bytes], *, patient: bool
    ) -> bool:
        """Publish until someone receives every envelope, the node is dead, or the deadline."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._send_deadline
        delay = _FIRST_RETRY
        pending = envelopes
        while True:
            pending = await self._publish_each(channel, pending)
            if not pending:
                return True
            if not patient:
                reason = "an earlier envelope for it was given up"
                break
            if self._is_alive is not None and not await self._is_alive(node_id):
                reason = "the node is dead"
                break
            remaining = deadline - loop.time()
            if remaining <= 0:
                reason = f"nobody listened within {self._send_deadline:g} s"
                break
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, _MAX_RETRY)
        self.undelivered += len(pending)
        level = logging.WARNING if patient else logging.DEBUG
        _log.log(
            level,
            "bus %s: %d envelope(s) for node %s not delivered: %s",
            self.node_id,
            len(pending),
            node_id,
            reason,
        )
        return False

    def __repr__(self) -> str:
        return (
            f"<RedisBus node={self.node_id!r} connected={self.connected} "
            f"reconnects={self.reconnects} undelivered={self.undelivered} "
            f"stalled={len(self._stalls)}>"
        )
