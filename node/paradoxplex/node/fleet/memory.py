"""The fleet in memory: the single-node default and the test double.

``MemoryFleet`` / ``MemoryBus`` implement ``FleetState`` / ``FleetBus`` with no I/O; several of
them can share one ``MemoryHub`` to make a fleet inside one process (``memory_backend``).
Nothing is ever lost on a memory bus.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Sequence
from typing import Any

from paradoxplex.shared.fleet import (
    Backend,
    BusStats,
    EnvelopeHandler,
    NodeRecord,
    ReconnectHandler,
)
from paradoxplex.shared.idempotency import ActionRecords, Claim
from paradoxplex.shared.sessions import SessionInfo
from paradoxplex.shared.upstreams import UpstreamSpec


class MemoryHub:
    """State and channels shared by the memory fleets and buses of one process."""

    def __init__(self) -> None:
        self.nodes: dict[str, NodeRecord] = {}
        self.sessions: dict[str, SessionInfo] = {}
        self.order: list[str] = []
        # a dict as a set: a set's table costs 2-3x a dict's per session (RSS per socket)
        self.by_node: dict[str, dict[str, None]] = {}
        self.upstreams: dict[str, UpstreamSpec] = {}
        self.health: dict[str, dict[str, dict[str, Any]]] = {}
        self.cleanups: set[str] = set()
        self.handlers: dict[str, EnvelopeHandler] = {}
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

    async def register_node(self, node: NodeRecord, *, ttl: float) -> None:
        self.hub.nodes[node.node_id] = node

    async def heartbeat(self, node: NodeRecord, *, ttl: float) -> None:
        self.hub.nodes[node.node_id] = node

    async def unregister_node(self, node_id: str) -> None:
        self.hub.nodes.pop(node_id, None)
        for client_uuid in list(self.hub.by_node.get(node_id, ())):
            self._forget(client_uuid, node_id)
        self.hub.by_node.pop(node_id, None)
        for views in self.hub.health.values():
            views.pop(node_id, None)

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

    async def lookup_session(self, client_uuid: str) -> SessionInfo | None:
        return self.hub.sessions.get(client_uuid)

    async def list_sessions(
        self, *, node: str | None, cursor: str | None, limit: int
    ) -> tuple[list[SessionInfo], str | None]:
        start = bisect.bisect_right(self.hub.order, cursor) if cursor else 0
        ids = self.hub.order[start:]
        if node is not None:
            owned = self.hub.by_node.get(node, {})
            ids = [client_uuid for client_uuid in ids if client_uuid in owned]
        page = ids[:limit]
        more = len(ids) > limit
        return [self.hub.sessions[s] for s in page], (page[-1] if more and page else None)

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
    """In-process bus: delivers to the handlers registered on the same hub."""

    def __init__(self, hub: MemoryHub | None = None) -> None:
        self.hub = hub or MemoryHub()
        self.node_id = ""
        self.stats = BusStats()

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
    ) -> None:
        """Listen as ``node_id`` (``on_reconnect`` is never called: nothing is ever lost)."""
        self.node_id = node_id
        self.hub.handlers[node_id] = handler

    async def close(self) -> None:
        self.hub.handlers.pop(self.node_id, None)

    async def send(
        self,
        node_id: str,
        envelope: bytes,
        *,
        count: int = 1,
        on_write: Callable[[], None] | None = None,
    ) -> bool:
        handler = self.hub.handlers.get(node_id)
        if handler is None:
            return False
        if on_write is not None:
            on_write()
        await handler(envelope)
        return True

    async def broadcast(self, envelope: bytes) -> None:
        for node_id, handler in list(self.hub.handlers.items()):
            if node_id != self.node_id:
                await handler(envelope)

    async def control(self, envelope: bytes) -> None:
        for handler in list(self.hub.handlers.values()):
            await handler(envelope)


def memory_backend(hub: MemoryHub | None = None) -> Backend:
    """An in-memory state and bus on one hub (a new one unless given)."""
    hub = hub or MemoryHub()
    return Backend(MemoryFleet(hub), MemoryBus(hub))
