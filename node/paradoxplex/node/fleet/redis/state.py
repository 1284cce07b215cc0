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
  hash per node; ``alive:<id>`` a string with a TTL the heartbeat refreshes, whose value is
  the node's live incarnation (its claim on the id: a plain start is a new one, and its record
  is written afresh, without an earlier process's ``last_handoff``); ``nodes`` the
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
- A fleet-wide page merges the first ``limit + 1`` ids of each (node, bucket) set; the rows
  read are then checked against their nodes' live incarnations (one more round trip, on the
  fleet-wide keys), and a page that lost rows to that reads on, ``PAGE_ROUNDS`` times at most.
- The claim (``alive:<id>``) and the record change together, in one script on the fleet-wide
  keys: a write by an incarnation that does not hold the id (and does not replace its holder)
  changes nothing. Stale sessions are removed by reading their rows first and the live
  incarnation after: a row of the live incarnation cannot be read before its claim exists
  (a node writes sessions only once registered), so it is never taken for stale.
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
    incarnation_of,
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
from paradoxplex.shared.incarnations import visible
from paradoxplex.shared.keys import Keys
from paradoxplex.shared.sessions import SessionInfo
from paradoxplex.shared.upstreams import UpstreamSpec

__all__ = ["CHUNK", "RedisFleet"]

#: Session deletes per round trip when a node is unregistered.
CHUNK = 500
#: Reads a listing page makes at most to fill itself past invisible records.
PAGE_ROUNDS = 8

# Claim a node id for an incarnation and write its record: KEYS alive, node, nodes;
# ARGV incarnation, ttl ms, node id, replacing flag ('1' or '0'), replaced, fields...
_CLAIM = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] and not (ARGV[4] == '1' and holder == ARGV[5]) then
  return holder
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if holder ~= ARGV[1] then
  redis.call('DEL', KEYS[2])
end
redis.call('HSET', KEYS[2], unpack(ARGV, 6))
redis.call('SADD', KEYS[3], ARGV[3])
return false
"""

# Release a node id, unless another incarnation holds it: KEYS alive;
# ARGV check flag ('1': only if free or held by ARGV[2]), incarnation. 1 when released.
_RELEASE = """
local holder = redis.call('GET', KEYS[1])
if ARGV[1] == '1' and holder and holder ~= ARGV[2] then
  return 0
end
redis.call('DEL', KEYS[1])
return 1
"""

# Forget a released node's record, unless the id was claimed again meanwhile: KEYS alive,
# node, nodes; ARGV node id. 1 when forgotten.
_FORGET = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('DEL', KEYS[2])
redis.call('SREM', KEYS[3], ARGV[1])
return 1
"""

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
        self._claim = self._redis.register_script(_CLAIM)
        self._release = self._redis.register_script(_RELEASE)
        self._forget = self._redis.register_script(_FORGET)
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
    async def register_node(
        self, node: NodeRecord, *, ttl: float, replacing: str | None = None
    ) -> str | None:
        """Write the record and claim the id (see ``FleetState.register_node``)."""
        return await self._write_node(node, ttl, replacing)

    @edge
    async def heartbeat(self, node: NodeRecord, *, ttl: float) -> str | None:
        """Refresh the record and the claim (re-creates both if Redis lost them)."""
        return await self._write_node(node, ttl, None)

    async def _write_node(self, node: NodeRecord, ttl: float, replacing: str | None) -> str | None:
        keys = self.keys
        fields: list[EncodableT] = []
        for name, value in hash_fields(node.to_dict()).items():
            fields += (name, value)
        holder = await self._claim(
            keys=[keys.node_alive(node.node_id), keys.node(node.node_id), keys.nodes],
            args=[
                node.incarnation,
                milliseconds(ttl),
                node.node_id,
                "0" if replacing is None else "1",
                replacing or "",
                *fields,
            ],
        )
        return None if holder is None else text(holder)

    @edge
    async def unregister_node(self, node_id: str, *, incarnation: str | None = None) -> list[str]:
        """Release the id (unless another incarnation holds it), remove the node's stale
        sessions, then its record and health views (unless the id was claimed meanwhile)."""
        keys = self.keys
        alive = keys.node_alive(node_id)
        check = ["0", ""] if incarnation is None else ["1", incarnation]
        released = await self._release(keys=[alive], args=check)
        removed = await self._remove_stale(node_id)
        if not released:
            return removed
        if not await self._forget(keys=[alive, keys.node(node_id), keys.nodes], args=[node_id]):
            return removed
        upstreams = texts(await self._redis.smembers(keys.health_upstreams))
        if upstreams:
            async with self._redis.pipeline(transaction=True) as pipe:
                for upstream in upstreams:
                    pipe.hdel(keys.health(upstream), node_id)
                await pipe.execute()
        return removed

    @edge
    async def remove_stale_sessions(self, node_id: str) -> list[str]:
        return await self._remove_stale(node_id)

    async def _remove_stale(self, node_id: str) -> list[str]:
        """Read every row of the node, then its live incarnation, then delete the rows that
        are not that incarnation's, ``CHUNK`` per MULTI and bucket."""
        buckets = range(self.keys.buckets)
        rows = await asyncio.gather(*(self._node_rows(node_id, b) for b in buckets))
        live = optional_raw(await self._redis.get(self.keys.node_alive(node_id)))
        keep = None if live is None else text(live)
        stale = [
            [(key, row) for key, row in found if row is None or incarnation_of(row) != keep]
            for found in rows
        ]
        await asyncio.gather(
            *(self._delete_rows(node_id, b, [key for key, _ in stale[b]]) for b in buckets)
        )
        return sorted(client_uuid_of(key) for gone in stale for key, row in gone if row is not None)

    async def _node_rows(self, node_id: str, bucket: int) -> list[tuple[bytes, bytes | None]]:
        """Every (16-byte id, row or None) the node's index lists in one bucket."""
        index, data = self.keys.node_sessions(node_id, bucket), self.keys.sessions_data(bucket)
        members = [
            raw(member) for member in cast(list[bytes], await self._redis.zrange(index, 0, -1))
        ]
        found: list[tuple[bytes, bytes | None]] = []
        for start in range(0, len(members), CHUNK):
            chunk = members[start : start + CHUNK]
            rows = await self._redis.hmget(data, chunk)
            found += zip(chunk, (optional_raw(row) for row in rows), strict=True)
        return found

    async def _delete_rows(self, node_id: str, bucket: int, uuid_keys: list[bytes]) -> None:
        index, data = self.keys.node_sessions(node_id, bucket), self.keys.sessions_data(bucket)
        for start in range(0, len(uuid_keys), CHUNK):
            chunk = uuid_keys[start : start + CHUNK]
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hdel(data, *chunk)
                pipe.zrem(index, *chunk)
                await pipe.execute()

    @edge
    async def node_record(self, node_id: str) -> NodeRecord | None:
        return decode_node(await self._redis.hgetall(self.keys.node(node_id)))

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
        """The session's record, unless another incarnation of its node is the live one."""
        try:
            key = uuid_key(client_uuid)
        except ValueError:
            return None
        data = self.keys.sessions_data(self.keys.bucket(client_uuid))
        info = unpack_session(key, optional_raw(await self._redis.hget(data, key)))
        if info is None:
            return None
        return info if await self._visible([info]) else None

    @edge
    async def list_sessions(
        self, *, node: str | None, cursor: str | None, limit: int
    ) -> tuple[list[SessionInfo], str | None]:
        """One page of visible sessions ordered by uuid after ``cursor``; the next cursor, or
        None on the last. A cursor this API did not give out is ``InvalidRequest("cursor",
        ...)``."""
        after = cursor_key(cursor) if cursor else None
        nodes = [node] if node is not None else await self._known()
        found: list[SessionInfo] = []
        for _ in range(PAGE_ROUNDS):
            want = limit + 1 - len(found)
            ids = await self._next_ids(nodes, after, want)
            found += await self._visible(await self._sessions(ids))
            if len(found) > limit:
                page = found[:limit]
                return page, page[-1].client_uuid
            if len(ids) < want:
                return found, None
            after = ids[-1]
        return found, (client_uuid_of(after) if after is not None else None)

    async def _next_ids(self, nodes: list[str], after: bytes | None, count: int) -> list[bytes]:
        """The first ``count`` session ids after ``after`` in the indexes of ``nodes``."""
        low: bytes = b"(" + after if after else b"-"
        async with self._redis.pipeline(transaction=False) as pipe:
            for node_id in nodes:
                for bucket in range(self.keys.buckets):
                    index = self.keys.node_sessions(node_id, bucket)
                    pipe.zrangebylex(index, low, b"+", 0, count)
            replies = await pipe.execute()
        return sorted(raw(member) for members in replies for member in members)[:count]

    async def _visible(self, infos: list[SessionInfo]) -> list[SessionInfo]:
        """Those of ``infos`` whose node has no live incarnation, or theirs."""
        if not infos:
            return []
        nodes = sorted({info.node_id for info in infos})
        async with self._redis.pipeline(transaction=False) as pipe:
            for node_id in nodes:
                pipe.get(self.keys.node_alive(node_id))
            claims = await pipe.execute()
        live = {
            node_id: None if claim is None else text(claim)
            for node_id, claim in zip(nodes, claims, strict=True)
        }
        return [info for info in infos if visible(info.incarnation, live[info.node_id])]

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
