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
- Incarnations (``shared.incarnations``): a node id has at most one live incarnation, the one
  whose ``register_node`` / ``heartbeat`` wrote it last and that has not expired or left; a
  write by another incarnation is refused (the holder's id is returned) unless it says which
  one it replaces. A session record whose incarnation is not its node's live one is invisible
  to ``lookup_session`` and ``list_sessions`` from the moment the claim changes hands, before
  ``remove_stale_sessions`` removes it.
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
- A hot handoff: ``pause`` stops a bus after what is under way and says where it stopped
  (``BusPosition``); a successor process ``start``-s from that position with the same node id,
  reading on and numbering on, so the other nodes see neither a gap nor a repeat; ``resume``
  goes on in the same process instead (the handoff did not happen). ``close(keep_inbox=True)``
  leaves the inbox to the successor.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from paradoxplex.shared.idempotency import Claim
from paradoxplex.shared.ordering import Position
from paradoxplex.shared.sessions import SessionInfo
from paradoxplex.shared.upstreams import UpstreamSpec

EnvelopeHandler = Callable[[bytes], Awaitable[None]]
ReconnectHandler = Callable[[], Awaitable[None]]


NODE_STATES = ("starting", "up", "draining", "degraded")


@dataclass(slots=True)
class NodeRecord:
    """One node as the fleet lists it, rewritten by its every heartbeat.

    ``state`` is ``starting`` (claimed the id, its bus does not listen yet), ``up``,
    ``draining`` (stops accepting) or ``degraded`` (lost Redis);
    ``messages_in`` / ``messages_out`` (frames read from / written to its sockets) and
    ``drops`` (every ``paradoxplex_drops`` reason) are counters since start, for a reader to
    diff; ``heartbeat_at`` is the node's wall clock when it wrote the record; ``incarnation``
    is the process that wrote it (new at each start, ``shared.incarnations``). ``last_handoff``:
    the hot handoff that made this process the node (``at``, ``from_pid``, ``moved``,
    ``kept``, ``pause_ms``), None when it started plainly.
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
    incarnation: str = ""
    last_handoff: dict[str, Any] | None = None
    #: the incarnation a hot handoff took the id from, while its records still count (the
    #: claim names it: ``incarnations.claim_value``); not part of the listed record
    predecessor: str = ""

    def to_dict(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "id": self.node_id,
            "incarnation": self.incarnation,
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
        if self.last_handoff is not None:
            record["last_handoff"] = self.last_handoff
        return record

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
            incarnation=str(data.get("incarnation", "")),
            last_handoff=_handoff(data.get("last_handoff")),
        )


HANDOFF_FIELDS = {"at": float, "from_pid": int, "moved": int, "kept": int, "pause_ms": float}


def _handoff(value: Any) -> dict[str, Any] | None:
    """A record's ``last_handoff``: from a dict or its JSON (a Redis hash field); None when
    absent or malformed."""
    if isinstance(value, str | bytes):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    if not isinstance(value, dict):
        return None
    try:
        return {name: kind(value[name]) for name, kind in HANDOFF_FIELDS.items()}
    except (KeyError, TypeError, ValueError):
        return None


class FleetState(Protocol):
    """What the fleet knows. Every method may raise ``FleetUnavailable``."""

    @property
    def shared(self) -> bool:
        """True when other nodes may exist (Redis); False for a lone in-memory node."""

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def ping(self) -> bool: ...

    async def register_node(
        self, node: NodeRecord, *, ttl: float, replacing: str | None = None
    ) -> str | None:
        """Write the node's record and claim its id for ``node.incarnation`` for ``ttl`` s:
        None when done; when another incarnation holds the id (and is not ``replacing``),
        nothing is written and that incarnation is returned."""

    async def heartbeat(self, node: NodeRecord, *, ttl: float) -> str | None:
        """``register_node`` again: refreshes the record and the claim (re-made if Redis lost
        them); returns the other incarnation that holds the id, if one does."""

    async def unregister_node(self, node_id: str, *, incarnation: str | None = None) -> list[str]:
        """A node leaves, or is dead: its record and claim go unless another incarnation than
        ``incarnation`` holds the id by then (None: whoever holds it); every session record of
        the node that is not the live incarnation's goes. Returns the removed sessions."""

    async def remove_stale_sessions(self, node_id: str) -> list[str]:
        """Remove the node's session records that are not its live incarnation's (all of them
        when it has none); returns their ``client_uuid``. Records written by the live
        incarnation while this runs are kept."""

    async def node_record(self, node_id: str) -> NodeRecord | None:
        """The node's stored record, alive or not (its ``incarnation`` wrote it last)."""

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

    async def lookup_session(self, client_uuid: str) -> SessionInfo | None:
        """The session's record; None when unknown or not its node's live incarnation's."""

    async def list_sessions(
        self, *, node: str | None, cursor: str | None, limit: int
    ) -> tuple[list[SessionInfo], str | None]:
        """Up to ``limit`` visible sessions after ``cursor``, by uuid, and the next cursor
        (None on the last page). A page may hold fewer than ``limit`` when records it read
        were invisible; the cursor then goes on past them."""

    async def node_sessions(self, node_id: str) -> list[str]:
        """Every session id registered under ``node_id``, whichever incarnation wrote it."""

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


@dataclass(frozen=True, slots=True)
class Numbering:
    """A sender's last number on one destination (``node_id``; "" for the fleet stream)."""

    node_id: str
    seq: int
    total: int


@dataclass(frozen=True, slots=True)
class BusPosition:
    """Where a bus stopped (``FleetBus.pause``), for a successor to go on from: the reader's
    last entry on the inbox and on the fleet stream, when it began reading (``since``, ms),
    what it had seen of each sender there, and its own epoch and numbering per destination.
    The empty position (``present`` False) is a bus with nothing to carry (in memory)."""

    present: bool = False
    inbox_last: str = ""
    fleet_last: str = ""
    since: int = 0
    inbox: tuple[Position, ...] = ()
    fleet: tuple[Position, ...] = ()
    epoch: int = 0
    peers: tuple[Numbering, ...] = ()
    fleet_numbering: Numbering = Numbering("", 0, 0)


NO_POSITION = BusPosition()


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
        position: BusPosition = NO_POSITION,
    ) -> None:
        """Listen as ``node_id``; ``on_reconnect()`` runs after every recovered loss. From
        ``position`` (a predecessor's, same node id): read on and number on from there."""

    async def pause(self, settle: Callable[[], Awaitable[None]] | None = None) -> BusPosition:
        """Stop reading (after the envelope in hand), await ``settle()`` (what the node still
        sends because of what it read: answers, forwarded replies), then stop sending (after
        the sends under way); where it stopped."""

    async def resume(self) -> None:
        """Read and send again from where ``pause`` stopped."""

    async def close(self, *, keep_inbox: bool = False) -> None:
        """Stop; ``keep_inbox``: leave this node's inbox to a successor (a handoff)."""

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
