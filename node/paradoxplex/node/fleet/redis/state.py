"""Fleet state in Redis: what the nodes of a fleet share.

Layout (every name comes from ``Keys(prefix, buckets=client.buckets)``; ``shared.placement``
says where each key lives when the fleet spans several servers):
- The sessions, per bucket: their rows and each node's index of them (``sessions``,
  ``RedisSessions``, which these methods call).
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
- A MULTI never leaves one bucket (or the fleet-wide keys); how sessions are written, paged
  and found stale is ``sessions``' rules.
- The claim (``alive:<id>``) and the record change together, in one script on the fleet-wide
  keys (``scripts``): a write by an incarnation that does not hold the id (and does not
  replace its holder) changes nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import orjson
from redis.typing import EncodableT

from paradoxplex.node.fleet.redis.client import FleetClient
from paradoxplex.node.fleet.redis.errors import REDIS_DOWN, cancel_requested, edge
from paradoxplex.node.fleet.redis.rows import (
    decode_node,
    decode_upstream,
    decoded_fields,
    encode_upstream,
    hash_fields,
    milliseconds,
    raw,
    text,
    texts,
)
from paradoxplex.node.fleet.redis.scripts import Scripts
from paradoxplex.node.fleet.redis.sessions import RedisSessions
from paradoxplex.shared.fleet import NodeRecord
from paradoxplex.shared.idempotency import MAX_KEYS, PENDING, WINDOW, Claim, Verdict
from paradoxplex.shared.incarnations import claim_value, claimant
from paradoxplex.shared.keys import Keys
from paradoxplex.shared.sessions import SessionInfo
from paradoxplex.shared.upstreams import UpstreamSpec

__all__ = ["RedisFleet"]

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
        self._scripts = Scripts(self._redis)
        self._sessions = RedisSessions(
            self._redis, self.keys, update_if_exists=self._scripts.update_if_exists
        )

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
        holder = await self._scripts.claim(
            keys=[keys.node_alive(node.node_id), keys.node(node.node_id), keys.nodes],
            args=[
                claim_value(node.incarnation, node.predecessor),
                milliseconds(ttl),
                node.node_id,
                "0" if replacing is None else "1",
                replacing or "",
                *fields,
            ],
        )
        return None if holder is None else claimant(text(holder))

    @edge
    async def unregister_node(self, node_id: str, *, incarnation: str | None = None) -> list[str]:
        """Release the id (unless another incarnation holds it), remove the node's stale
        sessions, then its record and health views (unless the id was claimed meanwhile)."""
        keys = self.keys
        alive = keys.node_alive(node_id)
        check = ["0", ""] if incarnation is None else ["1", incarnation]
        released = await self._scripts.release(keys=[alive], args=check)
        removed = await self._sessions.remove_stale(node_id)
        if not released:
            return removed
        if not await self._scripts.forget(
            keys=[alive, keys.node(node_id), keys.nodes], args=[node_id]
        ):
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
        return await self._sessions.remove_stale(node_id)

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

    # -- sessions (``sessions``) ----------------------------------------------------------

    @edge
    async def register_sessions(self, infos: Sequence[SessionInfo]) -> None:
        """Register many sessions: one MULTI per bucket, all sent at once."""
        await self._sessions.register(infos)

    @edge
    async def update_sessions(self, infos: Sequence[SessionInfo]) -> None:
        """Overwrite registered sessions' fields; a session not registered is left out."""
        await self._sessions.update(infos)

    @edge
    async def unregister_sessions(self, sessions: Sequence[tuple[str, str]]) -> None:
        """Remove many ``(client_uuid, node_id)``: one MULTI per bucket, all sent at once."""
        await self._sessions.unregister(sessions)

    @edge
    async def lookup_session(self, client_uuid: str) -> SessionInfo | None:
        """The session's record, unless another incarnation of its node is the live one."""
        return await self._sessions.lookup(client_uuid)

    @edge
    async def list_sessions(
        self, *, node: str | None, cursor: str | None, limit: int
    ) -> tuple[list[SessionInfo], str | None]:
        """One page of visible sessions ordered by uuid after ``cursor``; the next cursor, or
        None on the last. A cursor this API did not give out is ``InvalidRequest("cursor",
        ...)``."""
        nodes = [node] if node is not None else await self._known()
        return await self._sessions.page(nodes, cursor, limit)

    @edge
    async def node_sessions(self, node_id: str) -> list[str]:
        return await self._sessions.of_node(node_id)

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
        verdict, answer, evicted = await self._scripts.claim_action(
            keys=[self.keys.action(key), self.keys.actions],
            args=[fingerprint, milliseconds(PENDING), milliseconds(WINDOW), MAX_KEYS],
        )
        decided = _VERDICTS[raw(verdict)]
        return Claim(decided, raw(answer) if decided is Verdict.REPLAY else None, int(evicted))

    @edge
    async def settle_action(self, key: str, fingerprint: bytes, answer: bytes) -> None:
        await self._scripts.settle_action(
            keys=[self.keys.action(key), self.keys.actions],
            args=[fingerprint, answer, milliseconds(WINDOW)],
        )

    @edge
    async def release_action(self, key: str, fingerprint: bytes) -> None:
        await self._scripts.release_action(
            keys=[self.keys.action(key), self.keys.actions], args=[fingerprint]
        )

    def __repr__(self) -> str:
        return f"<RedisFleet prefix={self.keys.prefix!r}>"
