"""Fleet state and fleet bus: the interfaces every backend implements.

``FleetState`` is what the fleet knows (nodes, sessions, upstreams, health views);
``FleetBus`` is how nodes talk (one channel per node, one for broadcasts, one for control).
``Backend`` is the pair a node is given: a state and a bus built together, before the node.
The implementations live in ``paradoxplex.node.fleet``: ``memory`` (the single-node default and
the test double) and ``redis``; ``backends`` chooses between them.

Rules:
- Session listing is ordered by UUID; the cursor is the last UUID of the previous page.
- A node's sessions are indexed per node, so a dead node's sessions can be found and removed.
- ``claim_cleanup`` lets exactly one survivor clean up after a dead node.
- Fleet-wide admin actions (broadcasts, upstream changes) keep their idempotency keys here:
  ``claim_action`` is ``idempotency.ActionRecords.begin`` for the whole fleet, atomic (one
  claim wins), bounded in time (``WINDOW``, ``PENDING``) and number (``MAX_KEYS``);
  ``settle_action`` stores the answer, ``release_action`` forgets a key whose action did not
  act.
- A bus is whole before ``start``: ``start(node_id, handler, on_reconnect=...)`` only says who
  listens and what to call after the bus came back from a loss; ``connected`` says whether it
  can receive now (always True in memory).
- Both interfaces carry what the node and the admin API call, nothing more: what only tests
  need (one session at a time, a list of envelopes) is written in ``tests/support`` on top.
- ``send``'s ``on_write`` tells the caller the envelope may have left: until it is called,
  nothing was handed on.
- Every bus delivers what it sends to one node exactly once and in the order ``send`` was
  called (concurrent sends included), and each broadcast once to every other node; what it
  knows it lost on the way is counted in ``stats`` (memory: nothing is ever lost).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from paradoxplex.shared.idempotency import Claim
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

    async def register_sessions(self, infos: Sequence[SessionInfo]) -> None:
        """Many at once: one round trip, whatever their number."""

    async def update_sessions(self, infos: Sequence[SessionInfo]) -> None:
        """Overwrite registered sessions' fields; a session not registered stays unknown."""

    async def unregister_sessions(self, sessions: Sequence[tuple[str, str]]) -> None:
        """Many ``(client_uuid, node_id)`` at once."""

    async def lookup_session(self, client_uuid: str) -> SessionInfo | None: ...
    async def list_sessions(
        self, *, node: str | None, cursor: str | None, limit: int
    ) -> tuple[list[SessionInfo], str | None]: ...
    async def node_sessions(self, node_id: str) -> list[str]: ...

    async def put_upstream(self, spec: UpstreamSpec) -> None: ...
    async def remove_upstream(self, upstream_id: str) -> bool: ...
    async def list_upstreams(self) -> list[UpstreamSpec]: ...
    async def set_health(self, node_id: str, upstream_id: str, view: dict[str, Any]) -> None: ...
    async def health_views(self) -> dict[str, dict[str, dict[str, Any]]]: ...

    async def claim_action(self, key: str, fingerprint: bytes) -> Claim[bytes]:
        """Whether a fleet-wide action with this idempotency key may act now (a pending
        record is made when it may), replays, is in progress or mismatches."""

    async def settle_action(self, key: str, fingerprint: bytes, answer: bytes) -> None:
        """The claimed action answered ``answer``: replayed for ``WINDOW`` seconds."""

    async def release_action(self, key: str, fingerprint: bytes) -> None:
        """The claimed action did not act: the key is free again."""


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
    async def send(
        self,
        node_id: str,
        envelope: bytes,
        *,
        count: int = 1,
        on_write: Callable[[], None] | None = None,
    ) -> bool:
        """Deliver to one node; False when it never listened before giving up.
        ``count``: how many messages the envelope carries (what a loss of it would lose).
        ``on_write()`` is called just before each attempt to hand the envelope on (a call
        cancelled or failed before it never reaches the node: an admin command that was not
        written is known not to act)."""

    async def broadcast(self, envelope: bytes) -> None: ...
    async def control(self, envelope: bytes) -> None: ...


@dataclass(frozen=True, slots=True)
class Backend:
    """A fleet state and its bus, built together; the node starts and closes them."""

    state: FleetState
    bus: FleetBus
