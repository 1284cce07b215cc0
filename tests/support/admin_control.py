"""One fake admin ``Control`` for every admin test: a whole fleet in dicts, recording each call.

The fleet: this node (``NODE``) holds ``S1`` (active, ``site=a``) and ``S2`` (paused);
``OTHER`` holds ``S3`` (``site=b``); ``SILENT`` holds ``FAR`` and never answers, so every
action on ``FAR`` (and draining ``SILENT``) raises ``OwnerTimeout``. One upstream,
``127.0.0.1:45888``, ready on this node.

Switches a test may flip: ``fleet_down`` (Redis gone: ``FleetUnavailable``), ``broken``
(``send`` fails with a bug of the node's own), ``ready_answer``. Every call is recorded in
``calls`` as ``(method, *arguments)``; ``sent`` holds the payloads delivered per socket.
Actions honour idempotency keys as a node does (``keyed``): a key acts once, later calls
with it get the first answer (result or error) and ``once.replayed``, another request with
it is ``KeyReused``; ``onces`` holds every ``Once`` received. ``lose_answers``: that many keyed
actions act, then answer ``OwnerTimeout`` as if the owner's answer had been lost.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from paradoxplex.admin.control import SocketPage
from paradoxplex.shared.errors import (
    Conflict,
    FleetUnavailable,
    KeyReused,
    OwnerTimeout,
    UnknownSession,
    UnknownUpstream,
)
from paradoxplex.shared.idempotency import Once
from paradoxplex.shared.sessions import BroadcastTarget, SessionInfo, SessionState, matches
from paradoxplex.shared.upstreams import UpstreamMode, UpstreamSpec

T = TypeVar("T")
NODE = "node-a"
OTHER = "node-b"
SILENT = "node-silent"
S1 = "0f8fad5b-d9cb-469f-a165-70867728950e"
S2 = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
S3 = "16fd2706-8baf-433b-82eb-8c7fada847da"
FAR = "6ba7b810-9dad-41d1-80b4-00c04fd430c8"
UPSTREAM = "127.0.0.1:45888"
METRICS = b"# TYPE paradoxplex_sockets gauge\nparadoxplex_sockets 3\n"
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
NODES = [
    {
        "id": NODE,
        "listen": "0.0.0.0:7999",
        "admin_url": "http://127.0.0.1:8000",
        "started_at": 1714564800.0,
        "sockets": 2,
        "state": "up",
        "messages_in": 40,
        "messages_out": 38,
        "drops": 1,
    },
    {
        "id": OTHER,
        "listen": "0.0.0.0:7999",
        "admin_url": "http://10.0.0.9:8000",
        "started_at": 1714564900.0,
        "sockets": 1,
    },
]


def fleet_sessions() -> dict[str, SessionInfo]:
    """The fleet's four sockets, fresh for each fake (tests change them)."""
    return {
        S1: SessionInfo(S1, NODE, "10.0.0.1:5000", 1714564800.0, labels={"site": "a"}),
        S2: SessionInfo(S2, NODE, "10.0.0.2:5000", 1714564801.0, SessionState.PAUSED),
        S3: SessionInfo(S3, OTHER, "10.0.0.3:5000", 1714564802.0, labels={"site": "b"}),
        FAR: SessionInfo(FAR, SILENT, "10.0.0.4:5000", 1714564803.0),
    }


class FakeControl:
    """The admin API's view of the fleet above, answering like a node would."""

    def __init__(self, node_id: str = NODE) -> None:
        self.node_id = node_id
        self.incarnation = "0123456789ab"
        self.calls: list[tuple[Any, ...]] = []
        self.sessions = fleet_sessions()
        self.sent: dict[str, list[bytes]] = {}
        self.upstreams = {UPSTREAM: UpstreamSpec("127.0.0.1", 45888)}
        self.ready_answer: tuple[bool, dict[str, Any]] = (True, {"listening": True})
        self.fleet_down = False
        self.broken = False
        self.onces: list[Once] = []
        self.lose_answers = 0
        self.answers: dict[str, tuple[bytes, Any, Exception | None]] = {}

    def __repr__(self) -> str:
        counts = f"sessions={len(self.sessions)} calls={len(self.calls)}"
        return f"<FakeControl node={self.node_id} {counts}>"

    def asked(self, method: str) -> list[tuple[Any, ...]]:
        """The arguments of each call to ``method``, in order."""
        return [call[1:] for call in self.calls if call[0] == method]

    async def keyed(self, once: Once | None, act: Callable[[], Awaitable[T]]) -> T:
        """``act()`` once per key (see the module's docstring)."""
        if once is None:
            return await act()
        self.onces.append(once)
        if once.key not in self.answers:
            try:
                self.answers[once.key] = (once.fingerprint, await act(), None)
            except (UnknownSession, UnknownUpstream, Conflict) as error:
                self.answers[once.key] = (once.fingerprint, None, error)
        else:
            once.replayed = True
        asked, result, failed = self.answers[once.key]
        if asked != once.fingerprint:
            raise KeyReused(once.key)
        if self.lose_answers > 0:
            self.lose_answers -= 1
            raise OwnerTimeout("-", OTHER)
        if failed is not None:
            raise failed
        return result  # type: ignore[no-any-return]

    def _session(self, client_uuid: str) -> SessionInfo:
        if self.fleet_down:
            raise FleetUnavailable("redis: connection refused")
        info = self.sessions.get(client_uuid)
        if info is None:
            raise UnknownSession(client_uuid)
        if info.node_id == SILENT:
            raise OwnerTimeout(client_uuid, SILENT)
        return info

    def _upstream(self, upstream_id: str) -> UpstreamSpec:
        if upstream_id not in self.upstreams:
            raise UnknownUpstream(upstream_id)
        return self.upstreams[upstream_id]

    async def list_nodes(self) -> list[dict[str, Any]]:
        self.calls.append(("list_nodes",))
        if self.fleet_down:
            raise FleetUnavailable("redis: connection refused")
        return [dict(node) for node in NODES]

    async def list_sockets(
        self,
        *,
        node: str | None,
        state: SessionState | None,
        label: tuple[str, str] | None,
        limit: int,
        cursor: str | None,
    ) -> SocketPage:
        self.calls.append(("list_sockets", node, state, label, limit, cursor))
        found = [
            info
            for info in sorted(self.sessions.values(), key=lambda info: info.client_uuid)
            if (node is None or info.node_id == node)
            and (state is None or info.state is state)
            and matches(info, BroadcastTarget.ALL, label)
        ]
        start = int(cursor or 0)
        following = start + limit
        page = [info.to_dict() for info in found[start:following]]
        return SocketPage(page, str(following) if following < len(found) else None)

    async def get_socket(self, client_uuid: str) -> dict[str, Any]:
        self.calls.append(("get_socket", client_uuid))
        return self._session(client_uuid).to_dict()

    async def send(self, client_uuid: str, payload: bytes, *, once: Once | None = None) -> None:
        self.calls.append(("send", client_uuid, payload))

        async def act() -> None:
            if self.broken:
                raise RuntimeError("the node's own bug")
            self._session(client_uuid)
            self.sent.setdefault(client_uuid, []).append(payload)

        await self.keyed(once, act)

    async def pause(self, client_uuid: str, *, once: Once | None = None) -> None:
        self.calls.append(("pause", client_uuid))
        await self.keyed(once, lambda: self._set_state(client_uuid, SessionState.PAUSED))

    async def resume(self, client_uuid: str, *, once: Once | None = None) -> None:
        self.calls.append(("resume", client_uuid))
        await self.keyed(once, lambda: self._set_state(client_uuid, SessionState.ACTIVE))

    async def _set_state(self, client_uuid: str, state: SessionState) -> None:
        self._session(client_uuid).state = state

    async def set_labels(
        self, client_uuid: str, labels: dict[str, str], *, once: Once | None = None
    ) -> None:
        self.calls.append(("set_labels", client_uuid, labels))

        async def act() -> None:
            self._session(client_uuid).labels = dict(labels)

        await self.keyed(once, act)

    async def close(self, client_uuid: str, *, once: Once | None = None) -> None:
        self.calls.append(("close", client_uuid))

        async def act() -> None:
            self._session(client_uuid)
            del self.sessions[client_uuid]

        await self.keyed(once, act)

    async def broadcast(
        self,
        target: BroadcastTarget,
        label: tuple[str, str] | None,
        payload: bytes,
        *,
        once: Once | None = None,
    ) -> int:
        """Counts what this node would write: its own matching sockets."""
        self.calls.append(("broadcast", target, label, payload))

        async def act() -> int:
            local = [info for info in self.sessions.values() if info.node_id == self.node_id]
            return sum(1 for info in local if matches(info, target, label))

        return await self.keyed(once, act)

    async def list_upstreams(self) -> list[dict[str, Any]]:
        self.calls.append(("list_upstreams",))
        views = {
            self.node_id: {"state": "ready", "sent": 3, "received": 2, "errors": 0, "rtt_ms": 0.42},
            "far": {"state": "connecting", "errors": 4, "reason": "unreachable: refused"},
        }
        return [spec.to_dict() | {"nodes": views} for spec in self.upstreams.values()]

    async def add_upstream(self, spec: UpstreamSpec, *, once: Once | None = None) -> dict[str, Any]:
        self.calls.append(("add_upstream", spec))

        async def act() -> dict[str, Any]:
            if spec.id in self.upstreams:
                raise Conflict(f"upstream {spec.id} is already registered")
            self.upstreams[spec.id] = spec
            return spec.to_dict()

        return await self.keyed(once, act)

    async def remove_upstream(self, upstream_id: str, *, once: Once | None = None) -> None:
        self.calls.append(("remove_upstream", upstream_id))

        async def act() -> None:
            del self.upstreams[self._upstream(upstream_id).id]

        await self.keyed(once, act)

    async def drain_upstream(self, upstream_id: str, *, once: Once | None = None) -> dict[str, Any]:
        self.calls.append(("drain_upstream", upstream_id))
        return await self.keyed(once, lambda: self._drain_upstream(upstream_id))

    async def _drain_upstream(self, upstream_id: str) -> dict[str, Any]:
        spec = self._upstream(upstream_id)
        drained = UpstreamSpec(
            spec.host, spec.port, spec.ready_timeout, spec.alive_timeout, UpstreamMode.DRAINING
        )
        self.upstreams[upstream_id] = drained
        return drained.to_dict()

    async def drain_node(self, node_id: str, *, once: Once | None = None) -> dict[str, Any]:
        self.calls.append(("drain_node", node_id))
        return await self.keyed(once, lambda: self._drain_node(node_id))

    async def _drain_node(self, node_id: str) -> dict[str, Any]:
        if node_id == SILENT:
            raise OwnerTimeout("-", SILENT)
        if node_id not in {node["id"] for node in NODES}:
            raise Conflict(f"no live node {node_id}")
        return {"id": node_id, "draining": True, "at": 1714564800.0}

    def live(self) -> bool:
        self.calls.append(("live",))
        return True

    async def ready(self) -> tuple[bool, dict[str, Any]]:
        self.calls.append(("ready",))
        return self.ready_answer

    def metrics(self) -> tuple[bytes, str]:
        self.calls.append(("metrics",))
        return METRICS, METRICS_TYPE
