"""The bus's subscription: one dedicated connection, read raw, watched, replaced on loss.

Rules:
- One connection (``FleetClient.subscriber()``) subscribes to the node's channels; replies are
  read raw, one per message (no per-message dict), and handed over as the envelope bytes.
- On the broadcast channel a message travels as ``<len><sender id><envelope>``: the node's
  own broadcasts are skipped, the others stripped to the bare envelope.
- The handler runs here, one envelope at a time; an exception in it is counted and logged,
  and the subscription goes on. While it runs nothing is read.
- An idle subscription is PINGed every ``ping_interval``; when two intervals pass without any
  reply (time inside the handler does not count) the connection is declared lost.
- On loss: reconnect with jittered backoff (at most ``max_backoff`` between attempts),
  resubscribe, then call ``on_reconnect`` in a task of its own (a newer loss cancels it).
"""

from __future__ import annotations

import asyncio
import logging
import math

from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from tenacity import AsyncRetrying, retry_if_exception, wait_exponential, wait_random

from paradoxplex.node.redis.client import SOCKET_TIMEOUT, FleetClient
from paradoxplex.node.redis.errors import REDIS_DOWN, cancel_requested, reason, unavailable
from paradoxplex.node.tasks import checkpoint
from paradoxplex.shared.fleet import EnvelopeHandler, ReconnectHandler

__all__ = ["Subscriber"]

_log = logging.getLogger("paradoxplex.node.fleet")


class Subscriber:
    """A subscription to ``channels`` that keeps itself alive until closed.

    ``channels[1]`` is the broadcast channel; ``own_tag`` is this node's broadcast prefix.
    """

    def __init__(
        self,
        client: FleetClient,
        *,
        name: str,
        channels: tuple[bytes, ...],
        own_tag: bytes,
        handler: EnvelopeHandler,
        on_reconnect: ReconnectHandler | None,
        ping_interval: float,
        max_backoff: float,
    ) -> None:
        self.connected = False
        self.reconnects = 0
        self.handler_errors = 0
        self._client = client
        self._name = name
        self._channels = channels
        self._own_tag = own_tag
        self._handler = handler
        self._on_reconnect = on_reconnect
        self._ping_interval = ping_interval
        self._max_backoff = max_backoff
        self._received = 0
        self._handling = False
        self._conn: AbstractConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._reconnect_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Subscribe (``FleetUnavailable`` when Redis does not answer), then listen."""
        try:
            self._conn = await self._subscribe()
        except REDIS_DOWN as exc:
            raise unavailable(exc) from exc
        self.connected = True
        self._task = asyncio.create_task(self._run(), name=f"paradoxplex-bus-{self._name}")

    async def close(self) -> None:
        for task in (self._task, self._reconnect_task):
            if task is not None and not task.done():
                task.cancel()
                await asyncio.wait({task})
        self._task = self._reconnect_task = None
        self.connected = False
        conn, self._conn = self._conn, None
        if conn is not None:  # the task was cancelled before it ever ran
            await conn.disconnect()

    # -- connecting ----------------------------------------------------------------------

    async def _subscribe(self) -> AbstractConnection:
        conn = self._client.subscriber()
        try:
            async with asyncio.timeout(SOCKET_TIMEOUT * 2):
                await conn.connect()  # type: ignore[no-untyped-call]
                await conn.send_command("SUBSCRIBE", *self._channels, check_health=False)
                for _ in self._channels:
                    reply = await conn.read_response(push_request=True)
                    if not isinstance(reply, list) or reply[0] != b"subscribe":
                        raise RedisConnectionError(f"unexpected reply to SUBSCRIBE: {reply!r:.80}")
        except BaseException:
            await conn.disconnect(nowait=True)
            raise
        return conn

    async def _resubscribe(self) -> AbstractConnection:
        backoff = wait_exponential(multiplier=0.05, max=self._max_backoff) + wait_random(0, 0.05)
        retrying = AsyncRetrying(
            wait=backoff,
            retry=retry_if_exception(
                lambda exc: isinstance(exc, REDIS_DOWN) and not cancel_requested()
            ),
        )
        return await retrying(self._subscribe)

    async def _run(self) -> None:
        """The subscriber task: listen, and on loss reconnect, resubscribe, notify; forever."""
        loop = asyncio.get_running_loop()
        while True:
            conn = self._conn
            if conn is not None:
                try:
                    await self._listen(conn)
                except REDIS_DOWN as exc:
                    if cancel_requested():
                        raise asyncio.CancelledError from exc
                    _log.warning("bus %s: lost Redis (%s), reconnecting", self._name, reason(exc))
                except Exception:
                    _log.exception("bus %s: subscriber failed, reconnecting", self._name)
                finally:
                    self.connected = False
                    self._conn = None
                    await conn.disconnect()
            checkpoint()
            lost_at = loop.time()
            try:
                self._conn = await self._resubscribe()
            except Exception:
                if cancel_requested():  # a cancelled connect can surface as an OSError
                    raise asyncio.CancelledError from None
                _log.exception("bus %s: cannot resubscribe", self._name)
                await asyncio.sleep(self._max_backoff)
                continue
            self.connected = True
            self.reconnects += 1
            _log.info("bus %s: resubscribed after %.2f s", self._name, loop.time() - lost_at)
            self._notify_reconnect()

    def _notify_reconnect(self) -> None:
        if self._on_reconnect is None:
            return
        if self._reconnect_task is not None and not self._reconnect_task.done():
            self._reconnect_task.cancel()
        self._reconnect_task = asyncio.create_task(
            self._call_on_reconnect(self._on_reconnect),
            name=f"paradoxplex-bus-{self._name}-reconnect",
        )

    async def _call_on_reconnect(self, callback: ReconnectHandler) -> None:
        try:
            await callback()
        except Exception:
            _log.exception("bus %s: on_reconnect failed", self._name)

    # -- listening -----------------------------------------------------------------------

    async def _listen(self, conn: AbstractConnection) -> None:
        """Read until the connection fails or goes silent; raises why."""
        reader = asyncio.create_task(self._read(conn))
        watchdog = asyncio.create_task(self._watch(conn))
        try:
            await asyncio.wait((reader, watchdog), return_when=asyncio.FIRST_COMPLETED)
        finally:
            reader.cancel()
            watchdog.cancel()
            outcomes = await asyncio.gather(reader, watchdog, return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, Exception):
                raise outcome
        raise RedisConnectionError("subscription ended")

    async def _read(self, conn: AbstractConnection) -> None:
        """The hot path: one raw reply per message, handed over as the envelope bytes."""
        handler = self._handler
        read = conn.read_response
        forever = math.inf
        broadcast = self._channels[1]
        own = self._own_tag
        while True:
            reply = await read(timeout=forever, push_request=True)
            self._received += 1
            if reply[0] != b"message":
                continue  # PONG from the watchdog
            data: bytes = reply[2]
            if reply[1] == broadcast:
                if data.startswith(own):
                    continue
                data = data[data[0] + 1 :]
            self._handling = True
            try:
                await handler(data)
            except Exception:
                self.handler_errors += 1
                _log.exception("bus %s: envelope handler failed", self._name)
            finally:
                self._handling = False

    async def _watch(self, conn: AbstractConnection) -> None:
        """PING an idle subscription; raise when nothing at all came back for two intervals
        (time spent in the handler does not count: a slow handler is not a dead Redis)."""
        seen = self._received
        pinged = False
        while True:
            await asyncio.sleep(self._ping_interval)
            if self._received != seen or self._handling:
                seen, pinged = self._received, False
                continue
            if pinged or not conn.is_connected:
                raise RedisTimeoutError(f"subscription silent for {2 * self._ping_interval:g} s")
            await conn.send_command("PING", check_health=False)
            pinged = True

    def __repr__(self) -> str:
        return (
            f"<Subscriber {self._name!r} connected={self.connected} "
            f"reconnects={self.reconnects} handler_errors={self.handler_errors}>"
        )
