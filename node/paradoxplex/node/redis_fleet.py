"""Fleet state and fleet bus on Redis: what the nodes of a fleet share, and how they talk.

Layout (every name comes from ``Keys(prefix)``):
- ``session:<uuid>`` one hash per socket (``SessionInfo.to_dict()`` fields, labels as orjson);
  ``sessions`` a sorted set of every uuid (all scores 0: ZRANGEBYLEX pages by uuid);
  ``node-sessions:<node>`` the set of uuids a node holds.
- ``node:<id>`` one hash per node; ``alive:<id>`` a string with a TTL the heartbeat refreshes;
  ``nodes`` the set of every registered node id, alive or not (survivors find the dead there).
- ``upstreams`` a hash id → orjson; ``health:<upstream>`` a hash node id → orjson view;
  ``health-upstreams`` the set of upstreams that have views.
- ``cleanup:<node>`` a SET NX PX lock: one survivor cleans up after a dead node.
- channels ``chan:node:<id>``, ``chan:broadcast``, ``chan:control``.

Rules:
- Redis errors become ``FleetUnavailable`` once, at this edge (``_edge``).
- Multi-key writes take one round trip; a session's writes are one MULTI.
- The bus subscriber owns one connection, reads replies raw (no per-message dict), and is
  watched by PINGs when idle. On loss it reconnects with backoff (at most ``max_backoff``),
  resubscribes and calls ``on_reconnect`` in a task of its own.
- A broadcast travels as ``<len><sender id><envelope>`` so that its sender skips it; the
  handler always gets the bare envelope.
- ``send``: while PUBLISH answers 0 receivers, retry with backoff until ``send_deadline`` or
  until ``is_alive`` says the node is dead, then return False (counted, one WARNING per stall).
  One retry loop per stalled node: later envelopes for it wait behind it (no retry storm) and,
  once it gave up, fail after one more PUBLISH each.
- Order: envelopes sent one after another (each ``send`` awaited, or one ``publish_many``)
  arrive in that order, stall or not. Concurrent sends to one node have no order (they may
  travel on different connections).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar, cast

import orjson
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.typing import EncodableT, FieldT
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    wait_exponential,
    wait_random,
)

from paradoxplex.node.tasks import checkpoint
from paradoxplex.shared.errors import FleetUnavailable, InvalidRequest
from paradoxplex.shared.fleet import EnvelopeHandler, NodeRecord
from paradoxplex.shared.keys import Keys
from paradoxplex.shared.sessions import SessionInfo, SessionState
from paradoxplex.shared.upstreams import UpstreamSpec

__all__ = ["RedisBus", "RedisFleet", "redis_client"]

_log = logging.getLogger("paradoxplex.node.fleet")

P = ParamSpec("P")
R = TypeVar("R")

ReconnectCallback = Callable[[], Awaitable[None]]
AliveCheck = Callable[[str], Awaitable[bool]]

#: What "Redis is not answering" looks like (builtin TimeoutError is an OSError).
REDIS_DOWN: tuple[type[Exception], ...] = (RedisError, OSError)

SOCKET_TIMEOUT = 2.0
HEALTH_CHECK_INTERVAL = 5.0
#: Session deletes per round trip when a node is unregistered.
_CHUNK = 500
_FIRST_RETRY = 0.02
_MAX_RETRY = 0.25

# Overwrite a session's fields only while it is registered (no ghost after an unregister).
_UPDATE_IF_EXISTS = """
local updated = 0
for i = 1, #ARGV, 2 do
  if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 1 then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
    updated = updated + 1
  end
end
return updated
"""


def redis_client(
    url: str,
    *,
    socket_timeout: float = SOCKET_TIMEOUT,
    health_check_interval: float = HEALTH_CHECK_INTERVAL,
) -> Redis:
    """A client fit for the fleet: short timeouts, bytes responses, and one immediate retry
    when a connection breaks (never after a timeout: a frozen Redis fails within
    ``socket_timeout``). One client can serve a ``RedisFleet`` and a ``RedisBus``.
    """
    return Redis.from_url(
        url,
        decode_responses=False,
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_timeout,
        health_check_interval=health_check_interval,
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
    )


def _reason(exc: BaseException) -> str:
    text = str(exc) or "no detail"
    return f"{type(exc).__name__}: {text[:200]}"


def _edge(method: Callable[P, Awaitable[R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    """Translate Redis and socket errors into ``FleetUnavailable``, once."""

    @functools.wraps(method)
    async def translated(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await method(*args, **kwargs)
        except REDIS_DOWN as exc:
            if _cancel_requested():
                # redis-py can turn a cancellation that lands inside its own socket timeout
                # into a TimeoutError; passing that on as FleetUnavailable let callers'
                # retry loops swallow the cancel and run forever (seen in node shutdowns)
                raise asyncio.CancelledError from exc
            raise FleetUnavailable(_reason(exc)) from exc

    return translated


def _cancel_requested() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _texts(values: Iterable[bytes | str]) -> list[str]:
    return sorted(_text(value) for value in values)


def _fields(raw: Mapping[Any, Any]) -> dict[str, Any]:
    return {_text(key): _text(value) for key, value in raw.items()}


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


def _hash(record: Mapping[str, Any]) -> dict[FieldT, EncodableT]:
    """Hash fields of a record: scalars as they are, maps and lists (labels) as orjson."""
    return {
        name: orjson.dumps(value) if isinstance(value, dict | list) else value
        for name, value in record.items()
    }


def _bytes(value: bytes | str | None) -> bytes | None:
    return value.encode() if isinstance(value, str) else value


def _raw(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else value


def _cursor(text: str) -> bytes:
    """A paging cursor (a uuid, or any hex prefix of one) as 16 bytes that sort alike."""
    digits = text.replace("-", "").lower()
    if len(digits) > 32 or any(c not in "0123456789abcdef" for c in digits):
        raise InvalidRequest("cursor", "not a cursor this API gave out")
    return bytes.fromhex(digits.ljust(32, "0"))


def _id(session: str) -> bytes:
    """A session id as the 16 raw bytes of its UUID (ValueError when it is not one)."""
    return uuid.UUID(session).bytes


_STATES = {state.value: index for index, state in enumerate(SessionState)}
_STATE_OF = list(SessionState)


def _pack(info: SessionInfo) -> bytes:
    """A session as a compact row: a JSON array, positional (no field names, no uuid)."""
    return orjson.dumps(
        [
            info.node_id,
            info.remote,
            info.connected_at,
            _STATES[info.state.value],
            info.labels or 0,
            info.bytes_in,
            info.bytes_out,
            info.messages_in,
            info.messages_out,
        ]
    )


def _unpack(key: bytes, row: bytes | None) -> SessionInfo | None:
    if not row:
        return None
    try:
        node, remote, at, state, labels, b_in, b_out, m_in, m_out = orjson.loads(row)
        return SessionInfo(
            uuid=str(uuid.UUID(bytes=key)),
            node_id=str(node),
            remote=str(remote),
            connected_at=float(at),
            state=_STATE_OF[int(state)],
            labels={str(k): str(v) for k, v in dict(labels or {}).items()},
            bytes_in=int(b_in),
            bytes_out=int(b_out),
            messages_in=int(m_in),
            messages_out=int(m_out),
        )
    except (ValueError, TypeError, IndexError, orjson.JSONDecodeError):
        _log.warning("ignored a malformed session record in Redis")
        return None


def _decode_node(raw: Mapping[Any, Any]) -> NodeRecord | None:
    if not raw:
        return None
    data = _fields(raw)
    try:
        return NodeRecord.from_dict(data)
    except (KeyError, ValueError, TypeError) as exc:
        _log.warning("skipping a malformed node record %r: %s", data.get("id"), exc)
        return None


def _decode_upstream(upstream_id: str, raw: bytes | str) -> UpstreamSpec | None:
    try:
        return UpstreamSpec.from_dict(orjson.loads(raw))
    except (InvalidRequest, ValueError) as exc:
        _log.warning("skipping a malformed upstream record %r: %s", upstream_id, exc)
        return None


class RedisFleet:
    """Fleet state in Redis, shared by every node of a fleet. Every method but ``ping`` and
    ``close`` raises ``FleetUnavailable`` when Redis does not answer.

    ``client`` may be injected (it is then the caller's to close); ``from_url`` builds one
    with ``redis_client`` and closes it in ``close``.
    """

    shared = True

    def __init__(self, client: Redis, *, prefix: str, owns_client: bool = False) -> None:
        self.keys = Keys(prefix)
        self._client = client
        self._owns_client = owns_client
        self._update = client.register_script(_UPDATE_IF_EXISTS)

    @classmethod
    def from_url(cls, url: str, *, prefix: str) -> RedisFleet:
        return cls(redis_client(url), prefix=prefix, owns_client=True)

    @_edge
    async def start(self) -> None:
        """Check that Redis answers (a node does not start on an unreachable Redis)."""
        await self._client.ping()

    async def close(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def ping(self) -> bool:
        """True when Redis answers; never raises."""
        try:
            return bool(await self._client.ping())
        except REDIS_DOWN as exc:
            if _cancel_requested():
                raise asyncio.CancelledError from exc
            return False

    # -- nodes ---------------------------------------------------------------------------

    @_edge
    async def register_node(self, node: NodeRecord, *, ttl: float) -> None:
        await self._write_node(node, ttl)

    @_edge
    async def heartbeat(self, node: NodeRecord, *, ttl: float) -> None:
        """Refresh the record and the liveness key (re-creates both if Redis lost them)."""
        await self._write_node(node, ttl)

    async def _write_node(self, node: NodeRecord, ttl: float) -> None:
        keys = self.keys
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.hset(keys.node(node.node_id), mapping=_hash(node.to_dict()))
            pipe.set(keys.node_alive(node.node_id), b"1", px=_ms(ttl))
            pipe.sadd(keys.nodes, node.node_id)
            await pipe.execute()

    @_edge
    async def unregister_node(self, node_id: str) -> None:
        """Forget a node: its record, liveness, sessions and health views."""
        keys = self.keys
        members = await self._client.zrange(keys.node_sessions(node_id), 0, -1)
        sessions = [_raw(member) for member in cast(list[bytes], members)]
        upstreams = _texts(await self._client.smembers(keys.health_upstreams))
        for start in range(0, len(sessions), _CHUNK):
            chunk = sessions[start : start + _CHUNK]
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.hdel(keys.sessions_data, *chunk)
                pipe.zrem(keys.node_sessions(node_id), *chunk)
                await pipe.execute()
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.delete(keys.node(node_id), keys.node_alive(node_id), keys.node_sessions(node_id))
            pipe.srem(keys.nodes, node_id)
            for upstream in upstreams:
                pipe.hdel(keys.health(upstream), node_id)
            await pipe.execute()

    @_edge
    async def list_nodes(self) -> list[NodeRecord]:
        """The nodes whose liveness key exists, by id."""
        ids = await self._known()
        if not ids:
            return []
        async with self._client.pipeline(transaction=False) as pipe:
            for node_id in ids:
                pipe.exists(self.keys.node_alive(node_id))
                pipe.hgetall(self.keys.node(node_id))
            replies = await pipe.execute()
        records = (
            _decode_node(raw)
            for alive, raw in zip(replies[::2], replies[1::2], strict=True)
            if alive
        )
        return [record for record in records if record is not None]

    @_edge
    async def known_nodes(self) -> list[str]:
        """Every registered node id, alive or not."""
        return await self._known()

    async def _known(self) -> list[str]:
        return _texts(await self._client.smembers(self.keys.nodes))

    @_edge
    async def node_alive(self, node_id: str) -> bool:
        return bool(await self._client.exists(self.keys.node_alive(node_id)))

    @_edge
    async def claim_cleanup(self, node_id: str, claimant: str, *, ttl: float) -> bool:
        """True for the one claimant that may clean up after ``node_id`` (for ``ttl`` s)."""
        claimed = await self._client.set(self.keys.cleanup(node_id), claimant, nx=True, px=_ms(ttl))
        return bool(claimed)

    # -- sessions ------------------------------------------------------------------------
    # Layout (chosen for memory, under 300 bytes a session): one hash of every session,
    # field = the uuid's 16 raw bytes, value = a packed row (``_pack``); per node, a sorted
    # set of its sessions' 16-byte ids, all scores 0 (raw bytes sort as the hex text does).
    # A fleet-wide page merges the first ``limit + 1`` ids of each node's set.

    async def register_session(self, info: SessionInfo) -> None:
        await self.register_sessions([info])

    async def update_session(self, info: SessionInfo) -> None:
        """Overwrite a registered session's fields; a no-op when it is not registered."""
        await self.update_sessions([info])

    async def unregister_session(self, session: str, node_id: str) -> None:
        await self.unregister_sessions([(session, node_id)])

    @_edge
    async def register_sessions(self, infos: Sequence[SessionInfo]) -> None:
        """Register many sessions in one round trip (one connection, however many)."""
        if not infos:
            return
        keys = self.keys
        by_node: dict[str, list[bytes]] = {}
        for info in infos:
            by_node.setdefault(info.node_id, []).append(_id(info.uuid))
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.hset(keys.sessions_data, mapping={_id(i.uuid): _pack(i) for i in infos})
            for node_id, ids in by_node.items():
                pipe.zadd(keys.node_sessions(node_id), dict.fromkeys(ids, 0))
                pipe.sadd(keys.nodes, node_id)
            await pipe.execute()

    @_edge
    async def update_sessions(self, infos: Sequence[SessionInfo]) -> None:
        if not infos:
            return
        args: list[EncodableT] = []
        for info in infos:
            args += (_id(info.uuid), _pack(info))
        await self._update(keys=[self.keys.sessions_data], args=args)

    @_edge
    async def unregister_sessions(self, sessions: Sequence[tuple[str, str]]) -> None:
        """Remove many ``(session, node_id)`` in one round trip."""
        if not sessions:
            return
        keys = self.keys
        ids = [_id(session) for session, _ in sessions]
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.hdel(keys.sessions_data, *ids)
            for session, node_id in sessions:
                pipe.zrem(keys.node_sessions(node_id), _id(session))
            await pipe.execute()

    @_edge
    async def lookup_session(self, session: str) -> SessionInfo | None:
        try:
            key = _id(session)
        except ValueError:
            return None
        return _unpack(key, _bytes(await self._client.hget(self.keys.sessions_data, key)))

    @_edge
    async def list_sessions(
        self, *, node: str | None, cursor: str | None, limit: int
    ) -> tuple[list[SessionInfo], str | None]:
        """One page ordered by uuid after ``cursor``; the next cursor, or None on the last."""
        after = _cursor(cursor) if cursor else None
        low: bytes = b"(" + after if after else b"-"
        nodes = [node] if node is not None else _texts(await self._client.smembers(self.keys.nodes))
        async with self._client.pipeline(transaction=False) as pipe:
            for node_id in nodes:
                pipe.zrangebylex(self.keys.node_sessions(node_id), low, b"+", 0, limit + 1)
            replies = await pipe.execute()
        ids = sorted(_raw(member) for members in replies for member in members)[: limit + 1]
        page = ids[:limit]
        found = await self._sessions(page)
        next_cursor = str(uuid.UUID(bytes=page[-1])) if len(ids) > limit and page else None
        return found, next_cursor

    async def _sessions(self, ids: list[bytes]) -> list[SessionInfo]:
        if not ids:
            return []
        rows = await self._client.hmget(self.keys.sessions_data, ids)
        infos = (_unpack(key, _bytes(row)) for key, row in zip(ids, rows, strict=True))
        return [info for info in infos if info is not None]

    @_edge
    async def node_sessions(self, node_id: str) -> list[str]:
        members = await self._client.zrange(self.keys.node_sessions(node_id), 0, -1)
        return [str(uuid.UUID(bytes=_raw(member))) for member in cast(list[bytes], members)]

    # -- upstreams and health ------------------------------------------------------------

    @_edge
    async def put_upstream(self, spec: UpstreamSpec) -> None:
        await self._client.hset(self.keys.upstreams, spec.id, orjson.dumps(spec.to_dict()))

    @_edge
    async def remove_upstream(self, upstream_id: str) -> bool:
        """Remove it and every node's view of it; False when it was not registered."""
        keys = self.keys
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.hdel(keys.upstreams, upstream_id)
            pipe.delete(keys.health(upstream_id))
            pipe.srem(keys.health_upstreams, upstream_id)
            removed, _, _ = await pipe.execute()
        return bool(removed)

    @_edge
    async def list_upstreams(self) -> list[UpstreamSpec]:
        raw = _fields(await self._client.hgetall(self.keys.upstreams))
        specs = (_decode_upstream(key, raw[key]) for key in sorted(raw))
        return [spec for spec in specs if spec is not None]

    @_edge
    async def set_health(self, node_id: str, upstream_id: str, view: dict[str, Any]) -> None:
        keys = self.keys
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.hset(keys.health(upstream_id), node_id, orjson.dumps(view))
            pipe.sadd(keys.health_upstreams, upstream_id)
            await pipe.execute()

    @_edge
    async def health_views(self) -> dict[str, dict[str, dict[str, Any]]]:
        """upstream id → node id → that node's view."""
        upstreams = _texts(await self._client.smembers(self.keys.health_upstreams))
        if not upstreams:
            return {}
        async with self._client.pipeline(transaction=False) as pipe:
            for upstream in upstreams:
                pipe.hgetall(self.keys.health(upstream))
            replies = await pipe.execute()
        return {
            upstream: {_text(node): orjson.loads(view) for node, view in raw.items()}
            for upstream, raw in zip(upstreams, replies, strict=True)
            if raw
        }

    def __repr__(self) -> str:
        return f"<RedisFleet prefix={self.keys.prefix!r}>"


@dataclass(slots=True)
class _Stall:
    """A node that did not listen: envelopes for it wait here, one sender at a time."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0
    gave_up: bool = False


class RedisBus:
    """The fleet bus on Redis pub/sub.

    ``on_reconnect()`` is awaited (in a task of its own) after every reconnection, once the
    subscriptions are back: re-register what Redis may have lost. ``is_alive(node_id)`` lets
    ``send`` stop waiting for a node known to be dead. ``send_deadline`` (default 5 s) bounds
    how long ``send`` waits for a node to listen. ``ping_interval`` (default 1 s): an idle
    subscription is PINGed, and declared lost when two intervals pass in silence.
    ``max_backoff`` (default 1 s) caps the wait between reconnection attempts.

    The handler runs on the subscriber task, one envelope at a time: keep it quick (hand off
    to a bounded queue). While it runs nothing is read, and Redis drops a subscriber whose
    backlog outgrows its ``client-output-buffer-limit pubsub`` (then: reconnect, on_reconnect).
    """

    def __init__(
        self,
        client: Redis,
        *,
        prefix: str,
        on_reconnect: ReconnectCallback | None = None,
        is_alive: AliveCheck | None = None,
        send_deadline: float = 5.0,
        ping_interval: float = 1.0,
        max_backoff: float = 1.0,
        owns_client: bool = False,
    ) -> None:
        self.keys = Keys(prefix)
        self.node_id = ""
        self.connected = False
        self.reconnects = 0
        self.undelivered = 0
        self.handler_errors = 0
        self._client = client
        self._owns_client = owns_client
        self._on_reconnect = on_reconnect
        self._is_alive = is_alive
        self._send_deadline = send_deadline
        self._ping_interval = ping_interval
        self._max_backoff = max_backoff
        self._broadcast = self.keys.broadcast_channel
        self._control = self.keys.control_channel
        self._self_tag = b"\x00"
        self._channels: tuple[bytes, ...] = ()
        self._handler: EnvelopeHandler | None = None
        self._received = 0
        self._handling = False
        self._stalls: dict[str, _Stall] = {}
        self._conn: AbstractConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._reconnect_task: asyncio.Task[None] | None = None

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str,
        on_reconnect: ReconnectCallback | None = None,
        is_alive: AliveCheck | None = None,
        send_deadline: float = 5.0,
        ping_interval: float = 1.0,
        max_backoff: float = 1.0,
    ) -> RedisBus:
        return cls(
            redis_client(url),
            prefix=prefix,
            on_reconnect=on_reconnect,
            is_alive=is_alive,
            send_deadline=send_deadline,
            ping_interval=ping_interval,
            max_backoff=max_backoff,
            owns_client=True,
        )

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self, node_id: str, handler: EnvelopeHandler) -> None:
        """Subscribe (raises ``FleetUnavailable`` when Redis does not answer), then listen."""
        if self._task is not None:
            raise RuntimeError("RedisBus already started")
        sender = node_id.encode()
        if not 0 < len(sender) < 256:
            raise ValueError("a node id must be 1 to 255 bytes long")
        self.node_id = node_id
        self._self_tag = bytes([len(sender)]) + sender
        self._handler = handler
        channels = (self.keys.node_channel(node_id), self._broadcast, self._control)
        self._channels = tuple(channel.encode() for channel in channels)
        try:
            self._conn = await self._subscribe()
        except REDIS_DOWN as exc:
            raise FleetUnavailable(_reason(exc)) from exc
        self.connected = True
        self._task = asyncio.create_task(self._run(), name=f"paradoxplex-bus-{node_id}")

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
        if self._owns_client:
            await self._client.aclose()
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

    @_edge
    async def _publish(self, channel: str, data: bytes) -> int:
        return int(await self._client.publish(channel, data))

    @_edge
    async def _publish_each(self, channel: str, envelopes: list[bytes]) -> list[bytes]:
        """Publish in order; return the envelopes nobody received."""
        if len(envelopes) == 1:
            return [] if await self._client.publish(channel, envelopes[0]) else envelopes
        async with self._client.pipeline(transaction=False) as pipe:
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

    # -- subscribing ---------------------------------------------------------------------

    def _connection(self) -> AbstractConnection:
        """A connection of the client's kind that never reconnects behind our back."""
        pool = self._client.connection_pool
        options = {
            **pool.connection_kwargs,
            "decode_responses": False,
            "health_check_interval": 0,
            "retry": Retry(NoBackoff(), 0),
        }
        return pool.connection_class(**options)

    async def _subscribe(self) -> AbstractConnection:
        conn = self._connection()
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
                lambda exc: isinstance(exc, REDIS_DOWN) and not _cancel_requested()
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
                    if _cancel_requested():
                        raise asyncio.CancelledError from exc
                    _log.warning(
                        "bus %s: lost Redis (%s), reconnecting", self.node_id, _reason(exc)
                    )
                except Exception:
                    _log.exception("bus %s: subscriber failed, reconnecting", self.node_id)
                finally:
                    self.connected = False
                    self._conn = None
                    await conn.disconnect()
            checkpoint()
            lost_at = loop.time()
            try:
                self._conn = await self._resubscribe()
            except Exception:
                if _cancel_requested():  # a cancelled connect can surface as an OSError
                    raise asyncio.CancelledError from None
                _log.exception("bus %s: cannot resubscribe", self.node_id)
                await asyncio.sleep(self._max_backoff)
                continue
            self.connected = True
            self.reconnects += 1
            _log.info("bus %s: resubscribed after %.2f s", self.node_id, loop.time() - lost_at)
            self._notify_reconnect()

    def _notify_reconnect(self) -> None:
        if self._on_reconnect is None:
            return
        if self._reconnect_task is not None and not self._reconnect_task.done():
            self._reconnect_task.cancel()
        self._reconnect_task = asyncio.create_task(
            self._call_on_reconnect(self._on_reconnect),
            name=f"paradoxplex-bus-{self.node_id}-reconnect",
        )

    async def _call_on_reconnect(self, callback: ReconnectCallback) -> None:
        try:
            await callback()
        except Exception:
            _log.exception("bus %s: on_reconnect failed", self.node_id)

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
        assert handler is not None
        read = conn.read_response
        forever = math.inf
        broadcast = self._channels[1]
        own = self._self_tag
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
                _log.exception("bus %s: envelope handler failed", self.node_id)
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
            f"<RedisBus node={self.node_id!r} connected={self.connected} "
            f"reconnects={self.reconnects} undelivered={self.undelivered} "
            f"stalled={len(self._stalls)}>"
        )
