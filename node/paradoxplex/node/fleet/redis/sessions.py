"""The fleet's sessions in Redis: their rows, each node's index of them, and paging.

Layout (names from ``Keys``): ``session-data:{b}`` one hash per bucket of the sessions whose
uuid falls in bucket ``b``: field = the uuid's 16 raw bytes, value = a packed row
(``rows.pack_session``; under 300 bytes a session); ``node-sessions:{b}:<node>`` per node and
bucket, a sorted set of its sessions' 16-byte ids, all scores 0 (ZRANGEBYLEX pages by uuid).
A session's row and its index entry share a bucket: one MULTI writes both, on one server.

Rules:
- A MULTI never leaves one bucket; a batch of session writes is one MULTI per bucket it
  touches, sent concurrently. A node's sessions are deleted ``CHUNK`` per round trip and
  bucket when it is unregistered.
- A session's fields are overwritten only while it is registered (``update``: one script per
  bucket), so an update racing an unregister leaves no ghost.
- A session is visible while its node has no live incarnation, or its row is of that one
  (``shared.incarnations.visible``): ``lookup`` and ``page`` answer only visible ones.
- A fleet-wide page merges the first ``limit + 1`` ids of each (node, bucket) set; the rows
  read are then checked against their nodes' live incarnations (one more round trip, on the
  fleet-wide keys), and a page that lost rows to that reads on, ``PAGE_ROUNDS`` times at most.
- Stale sessions are removed by reading their rows first and the live incarnation after: a
  row of the live incarnation cannot be read before its claim exists (a node writes sessions
  only once registered), so it is never taken for stale.
- Errors are not translated here: ``RedisFleet``'s methods, which call these, are the edge.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import cast

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.typing import EncodableT

from paradoxplex.node.fleet.redis.rows import (
    client_uuid_of,
    cursor_key,
    incarnation_of,
    optional_raw,
    pack_session,
    raw,
    text,
    unpack_session,
    uuid_key,
)
from paradoxplex.node.tasks import all_of
from paradoxplex.shared.incarnations import live_set, visible
from paradoxplex.shared.keys import Keys
from paradoxplex.shared.sessions import SessionInfo

#: Session deletes per round trip when a node is unregistered.
CHUNK = 500
#: Reads a listing page makes at most to fill itself past invisible records.
PAGE_ROUNDS = 8


class RedisSessions:
    """The sessions' rows and indexes (see the module's rules); ``update_if_exists`` is the
    registered script of that name (``scripts.Scripts``)."""

    def __init__(self, redis: Redis, keys: Keys, *, update_if_exists: AsyncScript) -> None:
        self._redis = redis
        self.keys = keys
        self._update = update_if_exists

    # writing ----------------------------------------------------------------------------

    async def register(self, infos: Sequence[SessionInfo]) -> None:
        """Register many sessions: one MULTI per bucket, all sent at once; their nodes go in
        the set of registered nodes."""
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

    async def update(self, infos: Sequence[SessionInfo]) -> None:
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

    async def unregister(self, sessions: Sequence[tuple[str, str]]) -> None:
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

    # stale sessions ---------------------------------------------------------------------

    async def remove_stale(self, node_id: str) -> list[str]:
        """Read every row of the node, then its live incarnation, then delete the rows that
        are not that incarnation's, ``CHUNK`` per MULTI and bucket; the uuids removed."""
        buckets = range(self.keys.buckets)
        rows = await asyncio.gather(*(self._node_rows(node_id, b) for b in buckets))
        live = optional_raw(await self._redis.get(self.keys.node_alive(node_id)))
        keep = live_set(None if live is None else text(live))
        stale = [
            [(key, row) for key, row in found if row is None or incarnation_of(row) not in keep]
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

    # reading ----------------------------------------------------------------------------

    async def lookup(self, client_uuid: str) -> SessionInfo | None:
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

    async def page(
        self, nodes: list[str], cursor: str | None, limit: int
    ) -> tuple[list[SessionInfo], str | None]:
        """One page of the visible sessions of ``nodes`` ordered by uuid after ``cursor``;
        the next cursor, or None on the last."""
        after = cursor_key(cursor) if cursor else None
        found: list[SessionInfo] = []
        for _ in range(PAGE_ROUNDS):
            want = limit + 1 - len(found)
            ids = await self._next_ids(nodes, after, want)
            found += await self._visible(await self._rows(ids))
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

    async def _rows(self, ids: list[bytes]) -> list[SessionInfo]:
        if not ids:
            return []
        buckets = [self.keys.bucket(client_uuid_of(key)) for key in ids]
        async with self._redis.pipeline(transaction=False) as pipe:
            for key, bucket in zip(ids, buckets, strict=True):
                pipe.hget(self.keys.sessions_data(bucket), key)
            rows = await pipe.execute()
        infos = (unpack_session(key, optional_raw(row)) for key, row in zip(ids, rows, strict=True))
        return [info for info in infos if info is not None]

    async def of_node(self, node_id: str) -> list[str]:
        """The uuids the node's index lists, in order."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for bucket in range(self.keys.buckets):
                pipe.zrange(self.keys.node_sessions(node_id, bucket), 0, -1)
            replies = await pipe.execute()
        members = sorted(raw(member) for reply in replies for member in reply)
        return [client_uuid_of(member) for member in members]

    def __repr__(self) -> str:
        return f"<RedisSessions prefix={self.keys.prefix!r} buckets={self.keys.buckets}>"
