"""The node's side of the admin API: act locally on sockets it holds, over the bus otherwise.

``NodeControl`` implements ``paradoxplex.admin.control.Control`` with the few parts of a node
it is given, each seen through a Protocol of what it calls here (uvicorn hands a protocol its
``ServerState``, not the server): the ``NodeState`` (node id, sockets, draining), the fleet
state, the bus endpoint (``Asking``), the reply router's broadcast, the upstream pool's views
(``Upstreams``), the upkeep's peers and reconcile (``Upkeep``), and the node's ``listening``,
``request_stop`` and metrics. It decides nothing about sockets itself: commands are carried
out by ``SocketCommands`` here or on the owner node.

Idempotency keys (``Once``): a socket's command carries its key to the owner, which decides
(``commands``); a fleet-wide action (broadcast, upstream add, drain, remove) runs through
``keyed.KeyedActions`` with the fleet state's keys, and draining this node with its own.
A look-up of the owner that fails (Redis down) is a 503 ``not_applied``: nothing left.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Awaitable, Callable, Mapping, Sized
from typing import Any, Protocol

import orjson

from paradoxplex.admin.control import SocketPage
from paradoxplex.node.delivery.commands import Answer
from paradoxplex.node.delivery.endpoint import Located
from paradoxplex.node.keyed import KeyedActions, LocalActions
from paradoxplex.node.metrics import Metrics
from paradoxplex.node.state import NodeState
from paradoxplex.shared.errors import (
    ActionInProgress,
    Conflict,
    FleetError,
    FleetUnavailable,
    KeyReused,
    UnknownSession,
    UnknownUpstream,
    Unlocated,
)
from paradoxplex.shared.fleet import FleetState
from paradoxplex.shared.idempotency import Once
from paradoxplex.shared.peers import to_ask
from paradoxplex.shared.sessions import BroadcastTarget, SessionInfo, SessionState
from paradoxplex.shared.upstreams import UpstreamMode, UpstreamSpec


class Asking(Protocol):
    """The bus endpoint: other nodes asked and told."""

    async def request(
        self,
        owner: str,
        action: str,
        client_uuid: str,
        *,
        payload: bytes = b"",
        labels: dict[str, str] | None = None,
        once: Once | None = None,
    ) -> Answer:
        """The owner's answer to a command on its socket (once per key)."""

    async def locate(self, client_uuid: str, *, expected: set[str] | None) -> Located:
        """Which other node holds the socket, and its record; or who did not say."""

    async def announce(self, upstream_id: str) -> None:
        """Tell every node that the upstream registry changed."""


class LinkView(Protocol):
    def view(self) -> dict[str, Any]: ...


class Upstreams(Protocol):
    """The upstream pool, read only: this node's view of each link, who is in rotation, and
    the lifecycle events that wait for a link (an earlier incarnation's sockets')."""

    @property
    def links(self) -> Mapping[str, LinkView]: ...

    @property
    def owed(self) -> Sized: ...

    def balancer_members(self) -> list[str]: ...


class Upkeep(Protocol):
    """The fleet upkeep: the nodes seen alive lately, and opening links to the registry's."""

    def peers(self) -> set[str]: ...

    async def reconcile(self) -> None: ...


Broadcast = Callable[[BroadcastTarget, tuple[str, str] | None, bytes], Awaitable[int]]


class NodeControl:
    """Implements ``paradoxplex.admin.control.Control`` for one node, fleet-wide."""

    def __init__(
        self,
        state: NodeState,
        *,
        fleet: FleetState,
        asking: Asking,
        broadcast: Broadcast,
        upstreams: Upstreams,
        upkeep: Upkeep,
        listening: Callable[[], bool],
        request_stop: Callable[[], None],
        exposition: Callable[[], tuple[bytes, str]],
        metrics: Metrics,
    ) -> None:
        self.state = state
        self.fleet = fleet
        self.asking = asking
        self._broadcast = broadcast
        self.upstreams = upstreams
        self.upkeep = upkeep
        self._listening = listening
        self._request_stop = request_stop
        self._exposition = exposition
        self.keyed = KeyedActions(metrics)
        self.own_actions = LocalActions()

    @property
    def node_id(self) -> str:
        return self.state.node_id

    @property
    def incarnation(self) -> str:
        return self.state.incarnation

    async def list_nodes(self) -> list[dict[str, Any]]:
        return [record.to_dict() for record in await self.fleet.list_nodes()]

    async def list_sockets(
        self,
        *,
        node: str | None,
        state: SessionState | None,
        label: tuple[str, str] | None,
        limit: int,
        cursor: str | None,
    ) -> SocketPage:
        partial = False
        if self.fleet.shared:
            try:
                infos, next_cursor = await self.fleet.list_sessions(
                    node=node, cursor=cursor, limit=limit
                )
            except FleetUnavailable:  # Redis down: at least this node's own sockets
                partial = True
                infos, next_cursor = self._local_page(node=node, cursor=cursor, limit=limit)
        else:  # a lone node: its own sockets, as they are this instant
            infos, next_cursor = self._local_page(node=node, cursor=cursor, limit=limit)
        items = []
        for info in infos:
            fresh = self._local(info.client_uuid) or info
            if state is not None and fresh.state is not state:
                continue
            if label is not None and fresh.labels.get(label[0]) != label[1]:
                continue
            items.append(fresh.to_dict())
        return SocketPage(items, next_cursor, partial)

    def _local_page(
        self, *, node: str | None, cursor: str | None, limit: int
    ) -> tuple[list[SessionInfo], str | None]:
        if node is not None and node != self.state.node_id:
            return [], None
        ids = sorted(
            client_uuid
            for client_uuid in self.state.sessions
            if cursor is None or client_uuid > cursor
        )
        page = [
            info for client_uuid in ids[:limit] if (info := self._local(client_uuid)) is not None
        ]
        return page, (ids[limit - 1] if len(ids) > limit else None)

    def _local(self, client_uuid: str) -> SessionInfo | None:
        local = self.state.sessions.get(client_uuid)
        return local.info if local is not None else None

    async def _owner(self, client_uuid: str) -> str:
        if client_uuid in self.state.sessions:
            return self.state.node_id
        info = await self.fleet.lookup_session(client_uuid)
        if info is not None and info.node_id != self.state.node_id:
            return info.node_id
        if info is not None:  # this node's record, of a socket it no longer holds
            raise UnknownSession(client_uuid)
        owner, _ = await self._locate(client_uuid)
        return owner

    async def _locate(self, client_uuid: str) -> tuple[str, bytes]:
        """The fleet state does not know the socket: ask the other nodes (it may have just
        connected, or Redis came back empty and the registry is being refilled). The owner
        and its record, or ``UnknownSession`` once every node alive, or seen alive within
        ``node_ttl``, said no; ``Unlocated`` (or the ``FleetUnavailable`` that kept this node
        from knowing whom to ask) when some did not answer: the socket may exist, no 404."""
        if not self.fleet.shared:
            raise UnknownSession(client_uuid)
        expected: set[str] | None = None
        unreadable: FleetUnavailable | None = None
        try:  # every node alive now, or seen alive lately (Redis may have come back empty)
            states = {record.node_id: record.state for record in await self.fleet.list_nodes()}
            expected = to_ask(states, self.upkeep.peers(), self.state.node_id)
        except FleetUnavailable as error:
            unreadable = error  # nobody to count: wait for an owner until the locate timeout
        located = await self.asking.locate(client_uuid, expected=expected)
        if located.owner is not None:
            return located.owner, located.record
        if located.complete:
            raise UnknownSession(client_uuid)
        if unreadable is not None:
            raise unreadable
        raise Unlocated(client_uuid, ", ".join(sorted(located.silent)))

    async def _act(
        self,
        client_uuid: str,
        action: str,
        *,
        payload: bytes = b"",
        labels: dict[str, str] | None = None,
        once: Once | None = None,
    ) -> None:
        try:
            owner = await self._owner(client_uuid)
        except FleetError as error:  # only looked for: nothing left this node
            raise error.not_applied() from None
        answer = await self.asking.request(
            owner, action, client_uuid, payload=payload, labels=labels, once=once
        )
        if once is not None and answer.replayed:
            once.replayed = True
        if answer.status == "ok":
            return
        if answer.status == "not_found":
            raise UnknownSession(client_uuid)
        if answer.status == "key_reused" and once is not None:
            raise KeyReused(once.key)
        if answer.status == "in_progress" and once is not None:
            raise ActionInProgress(once.key)
        raise Conflict(answer.body.decode("utf-8", "replace") or "the owner node refused")

    async def get_socket(self, client_uuid: str) -> dict[str, Any]:
        local = self._local(client_uuid)
        if local is not None:
            return local.to_dict()
        info = await self.fleet.lookup_session(client_uuid)
        if info is not None:
            return info.to_dict()
        _, found = await self._locate(client_uuid)
        record: dict[str, Any] = orjson.loads(found)
        return record

    async def send(self, client_uuid: str, payload: bytes, *, once: Once | None = None) -> None:
        await self._act(client_uuid, "send", payload=payload, once=once)

    async def pause(self, client_uuid: str, *, once: Once | None = None) -> None:
        await self._act(client_uuid, "pause", once=once)

    async def resume(self, client_uuid: str, *, once: Once | None = None) -> None:
        await self._act(client_uuid, "resume", once=once)

    async def set_labels(
        self, client_uuid: str, labels: dict[str, str], *, once: Once | None = None
    ) -> None:
        await self._act(client_uuid, "labels", labels=labels, once=once)

    async def close(self, client_uuid: str, *, once: Once | None = None) -> None:
        await self._act(client_uuid, "close", once=once)

    async def broadcast(
        self,
        target: BroadcastTarget,
        label: tuple[str, str] | None,
        payload: bytes,
        *,
        once: Once | None = None,
    ) -> int:
        written: int = await self.keyed.run(
            once, self.fleet, lambda: self._broadcast(target, label, payload)
        )
        return written

    async def list_upstreams(self) -> list[dict[str, Any]]:
        fleet = self.fleet
        views = await fleet.health_views()
        items = []
        for spec in await fleet.list_upstreams():
            record = spec.to_dict()
            nodes = dict(views.get(spec.id, {}))
            link = self.upstreams.links.get(spec.id)
            if link is not None:
                nodes[self.state.node_id] = link.view()
            record["nodes"] = nodes
            items.append(record)
        return items

    async def add_upstream(self, spec: UpstreamSpec, *, once: Once | None = None) -> dict[str, Any]:
        record: dict[str, Any] = await self.keyed.run(once, self.fleet, lambda: self._add(spec))
        return record

    async def _add(self, spec: UpstreamSpec) -> dict[str, Any]:
        known = {existing.id for existing in await self.fleet.list_upstreams()}
        if spec.id in known:
            raise Conflict(f"upstream {spec.id} is already registered")
        await self.fleet.put_upstream(spec)
        await self._announce(spec.id)
        return spec.to_dict()

    async def remove_upstream(self, upstream_id: str, *, once: Once | None = None) -> None:
        await self.keyed.run(once, self.fleet, lambda: self._remove(upstream_id))

    async def _remove(self, upstream_id: str) -> None:
        if not await self.fleet.remove_upstream(upstream_id):
            raise UnknownUpstream(upstream_id)
        await self._announce(upstream_id)

    async def drain_upstream(self, upstream_id: str, *, once: Once | None = None) -> dict[str, Any]:
        record: dict[str, Any] = await self.keyed.run(
            once, self.fleet, lambda: self._drain_upstream(upstream_id)
        )
        return record

    async def _drain_upstream(self, upstream_id: str) -> dict[str, Any]:
        specs = {spec.id: spec for spec in await self.fleet.list_upstreams()}
        spec = specs.get(upstream_id)
        if spec is None:
            raise UnknownUpstream(upstream_id)
        drained = dataclasses.replace(spec, mode=UpstreamMode.DRAINING)
        await self.fleet.put_upstream(drained)
        await self._announce(upstream_id)
        return drained.to_dict()

    async def _announce(self, upstream_id: str) -> None:
        await self.upkeep.reconcile()
        if self.fleet.shared:
            await self.asking.announce(upstream_id)

    async def drain_node(self, node_id: str, *, once: Once | None = None) -> dict[str, Any]:
        record: dict[str, Any] = await self.keyed.run(
            once, self.own_actions, lambda: self._drain_node(node_id)
        )
        return record

    async def _drain_node(self, node_id: str) -> dict[str, Any]:
        if node_id != self.state.node_id:
            raise Conflict("a node can only drain itself; ask that node's admin API")
        self._request_stop()
        return {"id": node_id, "draining": True, "at": time.time()}

    def live(self) -> bool:
        return True

    async def ready(self) -> tuple[bool, dict[str, Any]]:
        """Ready: listening, not draining, an upstream in rotation, no lifecycle event waiting
        for one (a restart's DISCONNECTED for the earlier incarnation's sockets are told
        before the node is ready). Redis down leaves a node
        ready (its local traffic works; taking every node out of a Service during a Redis
        outage would turn a partial outage into a total one): the body says degraded."""
        listening = self._listening()
        upstreams = len(self.upstreams.balancer_members())
        fleet = True
        if self.fleet.shared:
            try:
                fleet = await self.fleet.ping()
            except Exception:
                fleet = False
        draining = self.state.draining
        detail: dict[str, Any] = {
            "listening": listening,
            "fleet": "ok" if fleet else "degraded",
            "upstreams_ready": upstreams,
            "draining": draining,
        }
        reasons = [
            reason
            for reason, failing in (
                ("not listening", not listening),
                ("draining", draining),
                ("no upstream in rotation", not upstreams),
                ("lifecycle events wait for an upstream", bool(len(self.upstreams.owed))),
            )
            if failing
        ]
        if reasons:
            detail["reason"] = "; ".join(reasons)
        return not reasons, detail

    def metrics(self) -> tuple[bytes, str]:
        return self._exposition()
