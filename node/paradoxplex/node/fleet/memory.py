"""The fleet in memory: the single-node default and the test double.

``MemoryFleet`` / ``MemoryBus`` implement ``FleetState`` / ``FleetBus`` with no I/O; several of
them can share one ``MemoryHub`` to make a fleet inside one process (``memory_backend``).
Nothing is ever lost on a memory bus. A claim (a node id's live incarnation) lasts until its
node leaves: nothing expires in memory.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from paradoxplex.shared.fleet import (
    NO_POSITION,
    Backend,
    BusPosition,
    BusStats,
    EnvelopeHandler,
    NodeRecord,
    ReconnectHandler,
)
from paradoxplex.shared.idempotency import ActionRecords, Claim
from paradoxplex.shared.incarnations import claim_value, claimant, live_set, visible
from paradoxplex.shared.sessions import SessionInfo
from paradoxplex.shared.upstreams import UpstreamSpec


class MemoryHub:
    """State and channels shared by the memory fleets and buses of one process."""

    def __init__(self) -> None:
        self.nodes: dict[str, NodeRecord] = {}
        self.claims: dict[str, str] = {}  # node id → its claim (``incarnations.claim_value``)
        self.sessions: dict[str, SessionInfo] = {}
        self.order: list[str] = []
        # a dict as a set: a set's table costs 2-3x a dict's per session (RSS per socket)
        self.by_node: dict[str, dict[str, None]] = {}
        self.upstreams: dict[str, UpstreamSpec] = {}
        self.health: dict[str, dict[str, dict[str, Any]]] = {}
        self.cleanups: set[str] = set()
        self.handlers: dict[str, EnvelopeHandler] = {}
        self.waiting: dict[str, list[bytes]] = {}  # for a paused node, in order
        self.actions: ActionRecords[bytes] = ActionRecords()

    def __repr__(self) -> str:
        return f"<MemoryHub nodes={len(self.nodes)} sessions={len(self.sessions)}>"


class MemoryFleet:
    """In-memory fleet state: the single-node default."""

    shared = False

    def __init__(self, hub: MemoryHub | None = None) -> None:
        self.hub = hub or MemoryHub()

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def ping(self) -> bool:
        return True

    async def register_node(
        self, node: NodeRecord, *, ttl: float, replacing: str | None = None
    ) -> str | None:
        claim = self.hub.claims.get(node.node_id)
        holder = None if claim is None else claimant(claim)
        if holder is not None and holder not in (node.incarnation, replacing):
            return holder
        self.hub.claims[node.node_id] = claim_value(node.incarnation, node.predecessor)
        self.hub.nodes[node.node_id] = node
        return None

    async def heartbeat(self, node: NodeRecord, *, ttl: float) -> str | None:
        return await self.register_node(node, ttl=ttl)

    async def unregister_node(self, node_id: str, *, incarnation: str | None = None) -> list[str]:
        hub = self.hub
        claim = hub.claims.get(node_id)
        released = incarnation is None or claim is None or claimant(claim) == incarnation
        if released:
            hub.claims.pop(node_id, None)
        removed = await self.remove_stale_sessions(node_id)
        if released:
            hub.nodes.pop(node_id, None)
            if not hub.by_node.get(node_id):
                hub.by_node.pop(node_id, None)
            for views in hub.health.values():
                views.pop(node_id, None)
        return removed

    async def remove_stale_sessions(self, node_id: str) -> list[str]:
        hub = self.hub
        live = live_set(hub.claims.get(node_id))
        stale = [
            client_uuid
            for client_uuid in hub.by_node.get(node_id, {})
            if hub.sessions[client_uuid].incarnation not in live
        ]
        for client_uuid in stale:
            self._forget(client_uuid, node_id)
        return sorted(stale)

    async def node_record(self, node_id: str) -> NodeRecord | None:
        return self.hub.nodes.get(node_id)

    async def list_nodes(self) -> list[NodeRecord]:
        return sorted(self.hub.nodes.values(), key=lambda node: node.node_id)

    async def known_nodes(self) -> list[str]:
        return sorted(set(self.hub.nodes) | set(self.hub.by_node))

    async def node_alive(self, node_id: str) -> bool:
        return node_id in self.hub.nodes

    async def claim_cleanup(self, node_id: str, claimant: str, *, ttl: float) -> bool:
        if node_id in self.hub.cleanups:
            return False
        self.hub.cleanups.add(node_id)
        return True

    async def register_sessions(self, infos: Sequence[SessionInfo]) -> None:
        hub = self.hub
        for info in infos:
            if info.client_uuid not in hub.sessions:
                bisect.insort(hub.order, info.client_uuid)
            hub.sessions[info.client_uuid] = info
            hub.by_node.setdefault(info.node_id, {})[info.client_uuid] = None

    async def update_sessions(self, infos: Sequence[SessionInfo]) -> None:
        for info in infos:
            if info.client_uuid in self.hub.sessions:
                self.hub.sessions[info.client_uuid] = info

    async def unregister_sessions(self, sessions: Sequence[tuple[str, str]]) -> None:
        for client_uuid, node_id in sessions:
            self._forget(client_uuid, node_id)

    def _forget(self, client_uuid: str, node_id: str) -> None:
        hub = self.hub
        if hub.sessions.pop(client_uuid, None) is not None:
            index = bisect.bisect_left(hub.order, client_uuid)
            if index < len(hub.order) and hub.order[index] == client_uuid:
                del hub.order[index]
        hub.by_node.get(node_id, {}).pop(client_uuid, None)

    def _visible(self, info: SessionInfo) -> bool:
        return visible(info.incarnation, self.hub.claims.get(info.node_id))

    async def lookup_session(self, client_uuid: str) -> SessionInfo | None:
        info = self.hub.sessions.get(client_uuid)
        return info if info is not None and self._visible(info) else None

    async def list_sessions(
        self, *, node: str | None, cursor: str | None, limit: int
    ) -> tuple[list[SessionInfo], str | None]:
        hub = self.hub
        start = bisect.bisect_right(hub.order, cursor) if cursor else 0
        owned = hub.by_node.get(node, {}) if node is not None else None
        found: list[SessionInfo] = []
        order = hub.order
        for index in range(start, len(order)):
            client_uuid = order[index]
            if owned is not None and client_uuid not in owned:
                continue
            info = hub.sessions[client_uuid]
            if self._visible(info):
                found.append(info)
                if len(found) > limit:
                    break
        page = found[:limit]
        more = len(found) > limit
        return page, (page[-1].client_uuid if more and page else None)

    async def node_sessions(self, node_id: str) -> list[str]:
        return sorted(self.hub.by_node.get(node_id, {}))

    async def put_upstream(self, spec: UpstreamSpec) -> None:
        self.hub.upstreams[spec.id] = spec

    async def remove_upstream(self, upstream_id: str) -> bool:
        self.hub.health.pop(upstream_id, None)
        return self.hub.upstreams.pop(upstream_id, None) is not None

    async def list_upstreams(self) -> list[UpstreamSpec]:
        return [self.hub.upstreams[key] for key in sorted(self.hub.upstreams)]

    async def set_health(self, node_id: str, upstream_id: str, view: dict[str, Any]) -> None:
        self.hub.health.setdefault(upstream_id, {})[node_id] = view

    async def health_views(self) -> dict[str, dict[str, dict[str, Any]]]:
        return {key: dict(value) for key, value in self.hub.health.items()}

    async def claim_action(self, key: str, fingerprint: bytes) -> Claim[bytes]:
        return self.hub.actions.begin(key, fingerprint, time.monotonic())

    async def settle_action(self, key: str, fingerprint: bytes, answer: bytes) -> None:
        self.hub.actions.finish(key, fingerprint, answer, time.monotonic())

    async def release_action(self, key: str, fingerprint: bytes) -> None:
        self.hub.actions.release(key, fingerprint)

    def __repr__(self) -> str:
        return f"<MemoryFleet {self.hub!r}>"


class MemoryBus:
    """In-process bus: delivers to the handlers registered on the same hub. While a node is
    paused, what is sent to it waits in the hub, in order, for ``resume`` or for a successor
    that starts as that node; a position says nothing (nothing is numbered in memory)."""

    def __init__(self, hub: MemoryHub | None = None) -> None:
        self.hub = hub or MemoryHub()
        self.node_id = ""
        self.stats = BusStats()
        self._handler: EnvelopeHandler | None = None
        self._paused = False
        self._open = asyncio.Event()
        self._open.set()

    @property
    def connected(self) -> bool:
        """Always True: nothing stands between the buses of one hub."""
        return True

    async def start(
        self,
        node_id: str,
        handler: EnvelopeHandler,
        *,
        on_reconnect: ReconnectHandler | None = None,
        position: BusPosition = NO_POSITION,
    ) -> None:
        """Listen as ``node_id`` (``on_reconnect`` is never called: nothing is ever lost);
        what waited for a paused ``node_id`` comes first."""
        self.node_id = node_id
        self._handler = handler
        await self._listen()

    async def _listen(self) -> None:
        assert self._handler is not None
        waiting = self.hub.waiting.pop(self.node_id, [])
        self.hub.handlers[self.node_id] = self._handler
        for envelope in waiting:
            await self._handler(envelope)

    async def pause(self, settle: Callable[[], Awaitable[None]] | None = None) -> BusPosition:
        waiting = self.hub.waiting.setdefault(self.node_id, [])

        async def hold(envelope: bytes) -> None:
            waiting.append(envelope)

        self.hub.handlers[self.node_id] = hold
        self._paused = True
        if settle is not None:
            await settle()
        self._open.clear()
        return NO_POSITION

    async def resume(self) -> None:
        self._open.set()
        if self._paused and self._handler is not None:
            self._paused = False
            await self._listen()

    async def close(self, *, keep_inbox: bool = False) -> None:
        if not self._paused:
            self.hub.handlers.pop(self.node_id, None)

    async def send(
        self,
        node_id: str,
        envelope: bytes,
        *,
        count: int = 1,
        on_write: Callable[[], None] | None = None,
    ) -> bool:
        await self._open.wait()
        handler = self.hub.handlers.get(node_id)
        if handler is None:
            return False
        if on_write is not None:
            on_write()
        await handler(envelope)
        return True

    async def broadcast(self, envelope: bytes) -> None:
        await self._open.wait()
        for node_id, handler in list(self.hub.handlers.items()):
            if node_id != self.node_id:
                await handler(envelope)

    async def control(self, envelope: bytes) -> None:
        await self._open.wait()
        for handler in list(self.hub.handlers.values()):
            await handler(envelope)


def memory_backend(hub: MemoryHub | None = None) -> Backend:
    """An in-memory state and bus on one hub (a new one unless given)."""
    hub = hub or MemoryHub()
    return Backend(MemoryFleet(hub), MemoryBus(hub))
