"""Fleet state in Redis: what the nodes of a fleet share.

Layout (every name comes from ``Keys(prefix, buckets=client.buckets)``; ``shared.placement``
says where each key lives when the fleet spans several servers):
- ``session-data:{b}`` one hash per bucket of the sessions whose uuid falls in bucket ``b``:
  field = the uuid's 16 raw bytes, value = a packed row (``rows.pack_session``; under 300
  bytes a session); ``node-sessions:{b}:<node>`` per node and bucket, a sorted set of its
  sessions' 16-byte ids, all scores 0 (ZRANGEBYLEX pages by uuid). A session's row and its
  index entry share a bucket: one MULTI writes both, on one server.
- Fleet-wide, tag ``{fleet}``: ``action:<digest>`` one hash (fingerprint, answer) per
  idempotency key of a fleet-wide admin action, with a TTL, and ``actions`` a sorted set of
  them by when they started (Redis's clock, µs), which bounds their number; ``node:<id>`` one
  hash per node; ``alive:<id>`` a string with a TTL the heartbeat refreshes; ``nodes`` the
  set of every registered node id, alive or not (survivors find the dead there);
  ``upstreams`` a hash id → orjson; ``health:<upstream>`` a hash node id → orjson view;
  ``health-upstreams`` the set of upstreams that have views; ``cleanup:<node>`` a SET NX PX
  lock: one survivor cleans up after a dead node.

Rules:
- Every method but ``ping`` and ``close`` raises ``FleetUnavailable`` when Redis does not
  answer (``errors.edge``); nothing here knows which Redis mode the client speaks to.
- A MULTI never leaves one bucket (or the fleet-wide keys); a batch of session writes is one
  MULTI per bucket it touches, sent concurrently. A node's sessions are deleted ``CHUNK`` per
  round trip and bucket when it is unregistered.
- A fleet-wide page merges the first ``limit + 1`` ids of each (node, bucket) set.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, cast

import orjson
from redis.typing import EncodableT

from paradoxplex.node.fleet.redis.client import FleetClient
from paradoxplex.node.fleet.redis.errors import REDIS_DOWN, cancel_requested, edge
from paradoxplex.node.fleet.redis.rows import (
    client_uuid_of,
    cursor_key,
    decode_node,
    decode_upstream,
    decoded_fields,
    encode_upstream,
    hash_fields,
    milliseconds,
    optional_raw,
    pack_session,
    raw,
    text,
    texts,
    unpack_session,
    uuid_key,
)
from paradoxplex.node.tasks import all_of
from paradoxplex.shared.fleet import NodeRecord
from paradoxplex.shared.idempotency import MAX_KEYS, PENDING, WINDOW, Claim, Verdict
from paradoxplex.shared.keys import Keys
from paradoxplex.shared.sessions import SessionInfo
from paradoxplex.shared.upstreams import UpstreamSpec

__all__ = ["CHUNK", "RedisFleet"]

#: Session deletes per round trip when a node is unregistered.
CHUNK = 500

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


# An idempotency key's claim: the record as it stands, or a new pending one (see idempotency).
# KEYS: the record, the index. ARGV: fingerprint, pending ms, window ms, max keys.
_CLAIM_ACTION = """
local held = redis.call('HMGET', KEYS[1], 'fp', 'answer')
if held[1] then
  if held[1] ~= ARGV[1] then return {'mismatch', '', 0} end
  if held[2] then return {'replay', held[2], 0} end
  return {'in_progress', '', 0}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('HSET', KEYS[1], 'fp', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local lived = (tonumber(ARGV[2]) + tonumber(ARGV[3])) * 1000
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - lived)
redis.call('ZADD', KEYS[2], now, KEYS[1])
local over = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[4])
if over <= 0 then return {'fresh', '', 0} end
local oldest = redis.call('ZRANGE', KEYS[2], 0, over - 1)
for _, name in ipairs(oldest) do redis.call('DEL', name) end
redis.call('ZREMRANGEBYRANK', KEYS[2], 0, over - 1)
return {'fresh', '', over}
"""
# KEYS: the record, the index. ARGV: fingerprint, answer, window ms.
_SETTLE_ACTION = """
redis.call('HSET', KEYS[1], 'fp', ARGV[1], 'answer', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if not redis.call('ZSCORE', KEYS[2], KEYS[1]) then
  local t = redis.call('TIME')
  redis.call('ZADD', KEYS[2], tonumber(t[1]) * 1000000 + tonumber(t[2]), KEYS[1])
end
return 1
"""
# KEYS: the record, the index. ARGV: fingerprint.
_RELEASE_ACTION = """
local held = redis.call('HMGET', KEYS[1], 'fp', 'answer')
if held[1] == ARGV[1] and not held[2] then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], KEYS[1])
  return 1
end
return 0
"""
_VERDICTS = {verdict.value.encode(): verdict for verdict in Verdict}


class RedisFleet:
    """Fleet state in Redis, shared by every node of a fleet.

    ``client`` comes from ``client.connect``; it is the caller's to close, unless
    ``owns_client`` (then ``close`` closes it).
    """

    shared = True

    def __init__(self, client: FleetClient, *, prefix: str, owns_client: bool = False) -> None:
        self.keys = Keys(prefix, buckets=client.buckets)
        self.client = client
        self._redis = client.redis
        self._owns_client = owns_client
        self._update = self._redis.register_script(_UPDATE_IF_EXISTS)
        self._claim_action = self._redis.register_script(_CLAIM_ACTION)
        self._settle_action = self._redis.register_script(_SETTLE_ACTION)
        self._release_action = self._redis.register_script(_RELEASE_ACTION)

    @edge
    async def start(self) -> None:
        """Check that Redis answers (a node does not start on an unreachable Redis)."""
        await self._redis.ping()

    async def close(self) -> None:
        if self._owns_client:
            await self.client.close()

    async def ping(self) -> bool:
        """True when Redis answers; never raises."""
        try:
            return bool(await self._redis.ping())
        except REDIS_DOWN as exc:
            if cancel_requested():
                raise asyncio.CancelledError from exc
            return False

    # -- nodes ---------------------------------------------------------------------------

    @edge
    async def register_node(self, node: NodeRecord, *, ttl: float) -> None:
        await self._write_node(node, ttl)

    @edge
    async def heartbeat(self, node: NodeRecord, *, ttl: float) -> None:
        """Refresh the record and the liveness key (re-creates both if Redis lost them)."""
        await self._write_node(node, ttl)

    async def _write_node(self, node: NodeRecord, ttl: float) -> None:
        keys = self.keys
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hset(keys.node(node.node_id), mapping=hash_fields(node.to_dict()))
            pipe.set(keys.node_alive(node.node_id), b"1", px=milliseconds(ttl))
            pipe.sadd(keys.nodes, node.node_id)
            await pipe.execute()

    @edge
    async def unregister_node(self, node_id: str) -> None:
        """Forget a node: its record, liveness, sessions and health views."""
        keys = self.keys
        await all_of(*(self._forget_bucket(node_id, b) for b in range(keys.buckets)))
        upstreams = texts(await self._redis.smembers(keys.health_upstreams))
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(keys.node(node_id), keys.node_alive(node_id))
            pipe.srem(keys.nodes, node_id)
            for upstream in upstreams:
                pipe.hdel(keys.health(upstream), node_id)
            await pipe.execute()

    async def _forget_bucket(self, node_id: str, bucket: int) -> None:
        """Delete a node's uuid_keys in one bucket, ``CHUNK`` per MULTI, then its index there."""
        index, data = self.keys.node_sessions(node_id, bucket), self.keys.sessions_data(bucket)
        members = await self._redis.zrange(index, 0, -1)
        uuid_keys = [raw(member) for member in cast(list[bytes], members)]
        for start in range(0, len(uuid_keys), CHUNK):
            chunk = uuid_keys[start : start + CHUNK]
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hdel(data, *chunk)
                pipe.zrem(index, *chunk)
                await pipe.execute()
        await self._redis.delete(index)

    @edge
    async def list_nodes(self) -> list[NodeRecord]:
        """The nodes whose liveness key exists, by id."""
        ids = await self._known()
        if not ids:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for node_id in ids:
                pipe.exists(self.keys.node_alive(node_id))
                pipe.hgetall(self.keys.node(node_id))
            replies = await pipe.execute()
        records = (
            decode_node(reply)
            for alive, reply in zip(replies[::2], replies[1::2], strict=True)
            if alive
        )
        return [record for record in records if record is not None]

    @edge
    async def known_nodes(self) -> list[str]:
        """Every registered node id, alive or not."""
        return await self._known()

    async def _known(self) -> list[str]:
        return texts(await self._redis.smembers(self.keys.nodes))

    @edge
    async def node_alive(self, node_id: str) -> bool:
        return bool(await self._redis.exists(self.keys.node_alive(node_id)))

    @edge
    async def claim_cleanup(self, node_id: str, claimant: str, *, ttl: float) -> bool:
        """True for the one claimant that may clean up after ``node_id`` (for ``ttl`` s)."""
        key = self.keys.cleanup(node_id)
        return bool(await self._redis.set(key, claimant, nx=True, px=milliseconds(ttl)))

    # -- sessions ------------------------------------------------------------------------

    @edge
    async def register_sessions(self, infos: Sequence[SessionInfo]) -> None:
        """Register many sessions: one MULTI per bucket, all sent at once."""
        if not infos:
            return
        writes = [self._register_bucket(b, group) for b, group in self._by_bucket(infos).items()]
        nodes = {info.node_id for info in infos}
        await all_of(self._redis.sadd(self.keys.nodes, *nodes), *writes)

    def _by_bucket(self, infos: Sequence[SessionInfo]) -> dict[int, list[SessionInfo]]:
        groups: dict[int, list[SessionInfo]] = {}
        for info in infos:
            groups.setdefault(self.keys.bucket(info.client_uuid), []).append(info)
        return groups

    async def _register_bucket(self, bucket: int, infos: list[SessionInfo]) -> None:
        keys = self.keys
        rows: dict[bytes, bytes] = {}
        by_node: dict[str, list[bytes]] = {}
        for info in infos:
            key = uuid_key(info.client_uuid)
            rows[key] = pack_session(info)
            by_node.setdefault(info.node_id, []).append(key)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.sessions_data(bucket), mapping=rows)  # type: ignore[arg-type]
            for node_id, ids in by_node.items():
                pipe.zadd(keys.node_sessions(node_id, bucket), dict.fromkeys(ids, 0))
            await pipe.execute()

    @edge
    async def update_sessions(self, infos: Sequence[SessionInfo]) -> None:
        """Overwrite registered sessions' fields; a session not registered is left out."""
        if not infos:
            return
        await all_of(
            *(self._update_bucket(b, group) for b, group in self._by_bucket(infos).items())
        )

    async def _update_bucket(self, bucket: int, infos: list[SessionInfo]) -> None:
        args: list[EncodableT] = []
        for info in infos:
            args += (uuid_key(info.client_uuid), pack_session(info))
        await self._update(keys=[self.keys.sessions_data(bucket)], args=args)

    @edge
    async def unregister_sessions(self, sessions: Sequence[tuple[str, str]]) -> None:
        """Remove many ``(client_uuid, node_id)``: one MULTI per bucket, all sent at once."""
        if not sessions:
            return
        groups: dict[int, list[tuple[str, str]]] = {}
        for pair in sessions:
            groups.setdefault(self.keys.bucket(pair[0]), []).append(pair)
        await all_of(*(self._unregister_bucket(b, group) for b, group in groups.items()))

    async def _unregister_bucket(self, bucket: int, sessions: list[tuple[str, str]]) -> None:
        keys = self.keys
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hdel(keys.sessions_data(bucket), *(uuid_key(s) for s, _ in sessions))
            for client_uuid, node_id in sessions:
                pipe.zrem(keys.node_sessions(node_id, bucket), uuid_key(client_uuid))
            await pipe.execute()

    @edge
    async def lookup_session(self, client_uuid: str) -> SessionInfo | None:
        try:
            key = uuid_key(client_uuid)
        except ValueError:
            return None
        data = self.keys.sessions_data(self.keys.bucket(client_uuid))
        row = optional_raw(await self._redis.hget(data, key))
        return unpack_session(key, row)

    @edge
    async def list_sessions(
        self, *, node: str | None, cursor: str | None, limit: int
    ) -> tuple[list[SessionInfo], str | None]:
        """One page ordered by uuid after ``cursor``; the next cursor, or None on the last.
        A cursor this API did not give out is ``InvalidRequest("cursor", ...)``."""
        after = cursor_key(cursor) if cursor else None
        low: bytes = b"(" + after if after else b"-"
        nodes = [node] if node is not None else await self._known()
        async with self._redis.pipeline(transaction=False) as pipe:
            for node_id in nodes:
                for bucket in range(self.keys.buckets):
                    index = self.keys.node_sessions(node_id, bucket)
                    pipe.zrangebylex(index, low, b"+", 0, limit + 1)
            replies = await pipe.execute()
        ids = sorted(raw(member) for members in replies for member in members)[: limit + 1]
        page = ids[:limit]
        found = await self._sessions(page)
        next_cursor = client_uuid_of(page[-1]) if len(ids) > limit and page else None
        return found, next_cursor

    async def _sessions(self, ids: list[bytes]) -> list[SessionInfo]:
        if not ids:
            return []
        buckets = [self.keys.bucket(client_uuid_of(key)) for key in ids]
        async with self._redis.pipeline(transaction=False) as pipe:
            for key, bucket in zip(ids, buckets, strict=True):
                pipe.hget(self.keys.sessions_data(bucket), key)
            rows = await pipe.execute()
        infos = (unpack_session(key, optional_raw(row)) for key, row in zip(ids, rows, strict=True))
        return [info for info in infos if info is not None]

    @edge
    async def node_sessions(self, node_id: str) -> list[str]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for bucket in range(self.keys.buckets):
                pipe.zrange(self.keys.node_sessions(node_id, bucket), 0, -1)
            replies = await pipe.execute()
        members = sorted(raw(member) for reply in replies for member in reply)
        return [client_uuid_of(member) for member in members]

    # -- upstreams and health ------------------------------------------------------------

    @edge
    async def put_upstream(self, spec: UpstreamSpec) -> None:
        await self._redis.hset(self.keys.upstreams, spec.id, encode_upstream(spec))

    @edge
    async def remove_upstream(self, upstream_id: str) -> bool:
        """Remove it and every node's view of it; False when it was not registered."""
        keys = self.keys
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hdel(keys.upstreams, upstream_id)
            pipe.delete(keys.health(upstream_id))
            pipe.srem(keys.health_upstreams, upstream_id)
            removed, _, _ = await pipe.execute()
        return bool(removed)

    @edge
    async def list_upstreams(self) -> list[UpstreamSpec]:
        stored = decoded_fields(await self._redis.hgetall(self.keys.upstreams))
        specs = (decode_upstream(key, stored[key]) for key in sorted(stored))
        return [spec for spec in specs if spec is not None]

    @edge
    async def set_health(self, node_id: str, upstream_id: str, view: dict[str, Any]) -> None:
        keys = self.keys
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hset(keys.health(upstream_id), node_id, orjson.dumps(view))
            pipe.sadd(keys.health_upstreams, upstream_id)
            await pipe.execute()

    @edge
    async def health_views(self) -> dict[str, dict[str, dict[str, Any]]]:
        """upstream id → node id → that node's view."""
        upstreams = texts(await self._redis.smembers(self.keys.health_upstreams))
        if not upstreams:
            return {}
        async with self._redis.pipeline(transaction=False) as pipe:
            for upstream in upstreams:
                pipe.hgetall(self.keys.health(upstream))
            replies = await pipe.execute()
        return {
            upstream: {text(node): orjson.loads(view) for node, view in reply.items()}
            for upstream, reply in zip(upstreams, replies, strict=True)
            if reply
        }

    # -- idempotency keys of fleet-wide actions ------------------------------------------

    @edge
    async def claim_action(self, key: str, fingerprint: bytes) -> Claim[bytes]:
        verdict, answer, evicted = await self._claim_action(
            keys=[self.keys.action(key), self.keys.actions],
            args=[fingerprint, milliseconds(PENDING), milliseconds(WINDOW), MAX_KEYS],
        )
        decided = _VERDICTS[raw(verdict)]
        return Claim(decided, raw(answer) if decided is Verdict.REPLAY else None, int(evicted))

    @edge
    async def settle_action(self, key: str, fingerprint: bytes, answer: bytes) -> None:
        await self._settle_action(
            keys=[self.keys.action(key), self.keys.actions],
            args=[fingerprint, answer, milliseconds(WINDOW)],
        )

    @edge
    async def release_action(self, key: str, fingerprint: bytes) -> None:
        await self._release_action(
            keys=[self.keys.action(key), self.keys.actions], args=[fingerprint]
        )

    def __repr__(self) -> str:
        return f"<RedisFleet prefix={self.keys.prefix!r}>"
