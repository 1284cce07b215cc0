"""What the admin API needs from a node: the seam between HTTP and the node's work.

A node implements ``Control`` for the whole fleet: it acts locally when it holds the socket
and over the fleet bus otherwise. Errors come from ``paradoxplex.shared.errors``:
``UnknownSession`` / ``UnknownUpstream`` (404), ``OwnerTimeout`` (504), ``InvalidRequest`` (400),
``Conflict`` (409), ``FleetUnavailable`` (503).

Every action takes ``once``: the request's ``Idempotency-Key`` and fingerprint, or None. With
one, the action acts at most once per key fleet-wide (``KeyReused``: 422, ``ActionInProgress``:
409), and a call that is answered with the first call's answer sets ``once.replayed``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from paradoxplex.shared.idempotency import Once
from paradoxplex.shared.sessions import BroadcastTarget, SessionState
from paradoxplex.shared.upstreams import UpstreamSpec


@dataclass(frozen=True, slots=True)
class SocketPage:
    """One page of sockets. ``partial``: the fleet state could not be read (Redis down), so
    the page holds only the sockets of the node that answered."""

    items: list[dict[str, Any]]
    cursor: str | None
    partial: bool = False


class Control(Protocol):
    @property
    def node_id(self) -> str: ...

    @property
    def incarnation(self) -> str:
        """This node process's incarnation (new at each start)."""

    async def list_nodes(self) -> list[dict[str, Any]]:
        """Live nodes: id, listen, admin_url, started_at, sockets."""

    async def list_sockets(
        self,
        *,
        node: str | None,
        state: SessionState | None,
        label: tuple[str, str] | None,
        limit: int,
        cursor: str | None,
    ) -> SocketPage:
        """One page of sockets fleet-wide (SessionInfo.to_dict() items) and the next cursor;
        with the fleet state unreachable, this node's own sockets, marked partial."""

    async def get_socket(self, client_uuid: str) -> dict[str, Any]: ...
    async def send(self, client_uuid: str, payload: bytes, *, once: Once | None = None) -> None: ...
    async def pause(self, client_uuid: str, *, once: Once | None = None) -> None: ...
    async def resume(self, client_uuid: str, *, once: Once | None = None) -> None: ...
    async def set_labels(
        self, client_uuid: str, labels: dict[str, str], *, once: Once | None = None
    ) -> None: ...
    async def close(self, client_uuid: str, *, once: Once | None = None) -> None: ...

    async def broadcast(
        self,
        target: BroadcastTarget,
        label: tuple[str, str] | None,
        payload: bytes,
        *,
        once: Once | None = None,
    ) -> int:
        """Deliver to every matching socket fleet-wide; returns how many this node wrote."""

    async def list_upstreams(self) -> list[dict[str, Any]]:
        """UpstreamSpec.to_dict() items, each with "nodes": {node_id: health view}."""

    async def add_upstream(self, spec: UpstreamSpec, *, once: Once | None = None) -> dict[str, Any]:
        """Register fleet-wide (409 ``Conflict`` when it exists); returns the record."""

    async def remove_upstream(self, upstream_id: str, *, once: Once | None = None) -> None: ...
    async def drain_upstream(
        self, upstream_id: str, *, once: Once | None = None
    ) -> dict[str, Any]: ...

    async def drain_node(self, node_id: str, *, once: Once | None = None) -> dict[str, Any]:
        """Ask a node (this one or another) to stop accepting and drain; returns its record."""

    def live(self) -> bool:
        """The process is up (``/livez`` names the node id and its incarnation)."""

    async def ready(self) -> tuple[bool, dict[str, Any]]:
        """(ready, detail): listening, not draining, an upstream in rotation; Redis down does
        not make a node unready (``detail["fleet"] == "degraded"``)."""

    def metrics(self) -> tuple[bytes, str]:
        """Prometheus exposition: (body, content type)."""
