"""Fleet state and fleet bus: the interfaces, and the in-memory implementation.

``FleetState`` is what the fleet knows (nodes, sessions, upstreams, health views);
``FleetBus`` is how nodes talk (one channel per node, one for broadcasts, one for control).
``Backend`` is the pair a node is given: a state and a bus built together, before the node.
``MemoryFleet`` / ``MemoryBus`` are the single-node default and the test double; several of
them can share one ``MemoryHub`` to make a fleet inside one process (``memory_backend``).
The Redis implementations live in ``paradoxplex.node.redis``; ``paradoxplex.node.backends``
chooses between the two.

Rules:
- Session listing is ordered by UUID; the cursor is the last UUID of the previous page.
- A node's sessions are indexed per node, so a dead node's sessions can be found and removed.
- ``claim_cleanup`` lets exactly one survivor clean up after a dead node.
- A bus is whole before ``start``: ``start(node_id, handler, on_reconnect=...)`` only says who
  listens and what to call after the bus came back from a loss; ``connected`` says whether it
  can receive now (always True in memory).
- Every bus delivers what it sends to one node exactly once and in the order ``send`` was
  called (concurrent sends included), and each broadcast once to every other node; what it
  knows it lost on the way is counted in ``stats`` (memory: nothing is ever lost).
"""

from __future__ import annotations

import bisect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from paradoxplex.shared.sessions import SessionInfo
from paradoxplex.shared.upstreams import UpstreamSpec

EnvelopeHandler = Callable[[bytes], Awaitable[None]]
ReconnectHandler = Callable[[], Awaitable[None]]


NODE_STATES = ("up", "draining", "degraded")


@dataclass(slots=True)
class NodeRecord:
    """One node as the fleet lists it, rewritten by its every heartbeat.

    ``state`` is ``up``, ``draining`` (stops accepting) or ``degraded`` (lost Redis);
    ``messages_in`` / ``messages_out`` (frames read from / written to its sockets) and
    ``drops`` (every ``paradoxplex_drops`` reason) are counters since start, for a reader to
    diff; ``heartbeat_at`` is the node's wall clock when it wrote the record.
    """

    node_id: str
    listen: str
    admin_url: str
    started_at: float
    sockets: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    state: str = "up"
    messages_in: int = 0
    messages_out: int = 0
    drops: int = 0
    heartbeat_at: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.node_id,
            "listen": self.listen,
            "admin_url": self.admin_url,
            "started_at": self.started_at,
            "sockets": self.sockets,
            "state": self.state,
            "messages_in": self.messages_in,
            "messages_out": self.messages_out,
            "drops": self.drops,
            "heartbeat_at": self.heartbeat_at,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NodeRecord:
        """The record ``to_dict`` wrote; the counters default to 0 (records of older nodes)."""
        state = str(data.get("state", "up"))
        return cls(
            node_id=str(data["id"]),
            listen=str(data["listen"]),
            admin_url=str(data["admin_url"]),
            started_at=float(data["started_at"]),
            sockets=int(data.get("sockets", 0)),
            state=state if state in NODE_STATES else "up",
            messages_in=int(data.get("messages_in", 0)),
            messages_out=int(data.get("messages_out", 0)),
            drops=int(data.get("drops", 0)),
            heartbeat_at=float(data.get("heartbeat_at", 0.0)),
        )


class FleetState(Protocol):
    """What the fleet knows. Every method may raise ``FleetUnavailable``."""

    @property
    def shared(self) -> bool:
        """True when other nodes may exist (Redis); False for a lone in-memory node."""

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def ping(self) -> bool: ...

    async def register_node(self, node: NodeRecord, *, ttl: float) -> None: ...
    async def heartbeat(self, node: NodeRecord, *, ttl: float) -> None: ...
    async def unregister_node(self, node_id: str) -> None: ...
    async def list_nodes(self) -> list[NodeRecord]: ...
    async def known_nodes(self) -> list[str]: ...
    async def node_alive(self, node_id: str) -> bool: ...
    async def claim_cleanup(self, node_id: str, claimant: str, *, ttl: float) -> bool: ...

    async def register_session(self, info: SessionInfo) -> None: ...
    async def update_session(self, info: SessionInfo) -> None: ...
    async def unregister_session(self, session: str, node_id: str) -> None: ...
    async def register_sessions(self, infos: Sequence[SessionInfo]) -> None:
        """Many at once: one round trip, whatever their number."""

    async def update_sessions(self, infos: Sequence[SessionInfo]) -> None: ...
    async def unregister_sessions(self, sessions: Sequence[tuple[str, str]]) -> None:
        """Many ``(session, node_id)`` at once."""

    async def lookup_session(self, session: str) -> SessionInfo | None: ...
    async def list_sessions(
        self, *, node: str | None, cursor: str | None, limit: int
    ) -> tuple[list[SessionInfo], str | None]: ...
    async def node_sessions(self, node_id: str) -> list[str]: ...

    async def put_upstream(self, spec: UpstreamSpec) -> None: ...
    async def remove_upstream(self, upstream_id: str) -> bool: ...
    async def list_upstreams(self) -> list[UpstreamSpec]: ...
    async def set_health(self, node_id: str, upstream_id: str, view: dict[str, Any]) -> None: ...
    async def health_views(self) -> dict[str, dict[str, dict[str, Any]]]: ...


@dataclass(slots=True)
class BusStats:
    """What a bus counted on the receiving side: ``gaps`` (runs of envelopes that never came),
    ``lost`` (the messages in them: a batch of replies counts each reply) and ``duplicates``
    (envelopes that came twice and were dropped)."""

    gaps: int = 0
    lost: int = 0
    duplicates: int = 0


class FleetBus(Protocol):
    """How nodes talk. Envelopes are serialized ``paradoxplex.bus.Envelope`` messages."""

    @property
    def stats(self) -> BusStats:
        """What this bus counted as lost or duplicated on the way in."""

    @property
    def connected(self) -> bool:
        """True while envelopes for this node can reach it."""

    async def start(
        self,
        node_id: str,
        handler: EnvelopeHandler,
        *,
        on_reconnect: ReconnectHandler | None = None,
    ) -> None:
        """Listen as ``node_id``; ``on_reconnect()`` runs after every recovered loss."""

    async def close(self) -> None: ...
    async def send(self, node_id: str, envelope: bytes, *, count: int = 1) -> bool:
        """Deliver to one node; False when it never listened before giving up.
        ``count``: how many messages the envelope carries (what a loss of it would lose)."""

    async def publish_many(self, node_id: str, envelopes: list[bytes]) -> bool:
        """``send`` for a batch, in order; True when every envelope was delivered."""

    async def broadcast(self, envelope: bytes) -> None: ...
    async def control(self, envelope: bytes) -> None: ...


@dataclass(frozen=True, slots=True)
class Backend:
    """A fleet state and its bus, built together; the node starts and closes them."""

    state: FleetState
    bus: FleetBus


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
        for session in list(self.hub.by_node.get(node_id, ())):
            await self.unregister_session(session, node_id)
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

    async def register_session(self, info: SessionInfo) -> None:
        if info.uuid not in self.hub.sessions:
            bisect.insort(self.hub.order, info.uuid)
        self.hub.sessions[info.uuid] = info
        self.hub.by_node.setdefault(info.node_id, {})[info.uuid] = None

    async def update_session(self, info: SessionInfo) -> None:
        if info.uuid in self.hub.sessions:
            self.hub.sessions[info.uuid] = info

    async def unregister_session(self, session: str, node_id: str) -> None:
        if self.hub.sessions.pop(session, None) is not None:
            index = bisect.bisect_left(self.hub.order, session)
            if index < len(self.hub.order) and self.hub.order[index] == session:
                del self.hub.order[index]
        self.hub.by_node.get(node_id, {}).pop(session, None)

    async def register_sessions(self, infos: Sequence[SessionInfo]) -> None:
        for info in infos:
            await self.register_session(info)

    async def update_sessions(self, infos: Sequence[SessionInfo]) -> None:
        for info in infos:
            await self.update_session(info)

    async def unregister_sessions(self, sessions: Sequence[tuple[str, str]]) -> None:
        for session, node_id in sessions:
            await self.unregister_session(session, node_id)

    async def lookup_session(self, session: str) -> SessionInfo | None:
        return self.hub.sessions.get(session)

    async def list_sessions(
        self, *, node: str | None, cursor: str | None, limit: int
    ) -> tuple[list[SessionInfo], str | None]:
        start = bisect.bisect_right(self.hub.order, cursor) if cursor else 0
        ids = self.hub.order[start:]
        if node is not None:
            owned = self.hub.by_node.get(node, {})
            ids = [session for session in ids if session in owned]
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

    async def send(self, node_id: str, envelope: bytes, *, count: int = 1) -> bool:
        handler = self.hub.handlers.get(node_id)
        if handler is None:
            return False
        await handler(envelope)
        return True

    async def publish_many(self, node_id: str, envelopes: list[bytes]) -> bool:
        for envelope in envelopes:
            if not await self.send(node_id, envelope):
                return False
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
