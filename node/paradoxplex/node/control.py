"""The node's side of the admin API: act locally on sockets it holds, over the bus otherwise."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import orjson

from paradoxplex.shared.errors import Conflict, UnknownSession, UnknownUpstream
from paradoxplex.shared.sessions import BroadcastTarget, SessionInfo, SessionState
from paradoxplex.shared.upstreams import UpstreamMode, UpstreamSpec
from paradoxplex.wire import bus_pb2

if TYPE_CHECKING:
    from paradoxplex.node.node import Node


def execute_local(node: Node, command: bus_pb2.Command) -> tuple[str, bytes]:
    """Run an admin command on a socket this node holds: (status, orjson body)."""
    session = node.sessions.get(command.client_uuid)
    if session is None or session.info is None:
        return "not_found", b""
    info = session.info
    if command.action == "send":
        if not session.write(command.payload):
            return "error", b"socket is closing or its write buffer is full"
    elif command.action in ("pause", "resume"):
        session.set_paused(command.action == "pause")
        node.sync.changed(info)
    elif command.action == "labels":
        info.labels = dict(command.labels)
        node.sync.changed(info)
    elif command.action == "close":
        session.close("closed by admin")
    elif command.action != "get":
        return "error", b"unknown action"
    return "ok", orjson.dumps(info.to_dict())


class NodeControl:
    """Implements ``paradoxplex.admin.control.Control`` for one node, fleet-wide."""

    def __init__(self, node: Node) -> None:
        self.node = node

    @property
    def node_id(self) -> str:
        return self.node.node_id

    async def list_nodes(self) -> list[dict[str, Any]]:
        return [record.to_dict() for record in await self.node.fleet.list_nodes()]

    async def list_sockets(
        self,
        *,
        node: str | None,
        state: SessionState | None,
        label: tuple[str, str] | None,
        limit: int,
        cursor: str | None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        if self.node.fleet.shared:
            infos, next_cursor = await self.node.fleet.list_sessions(
                node=node, cursor=cursor, limit=limit
            )
        else:  # a lone node: its own sockets, as they are this instant
            infos, next_cursor = self._local_page(node=node, cursor=cursor, limit=limit)
        items = []
        for info in infos:
            fresh = self._local(info.uuid) or info
            if state is not None and fresh.state is not state:
                continue
            if label is not None and fresh.labels.get(label[0]) != label[1]:
                continue
            items.append(fresh.to_dict())
        return items, next_cursor

    def _local_page(
        self, *, node: str | None, cursor: str | None, limit: int
    ) -> tuple[list[SessionInfo], str | None]:
        if node is not None and node != self.node.node_id:
            return [], None
        ids = sorted(uuid for uuid in self.node.sessions if cursor is None or uuid > cursor)
        page = [info for uuid in ids[:limit] if (info := self._local(uuid)) is not None]
        return page, (ids[limit - 1] if len(ids) > limit else None)

    def _local(self, session: str) -> SessionInfo | None:
        local = self.node.sessions.get(session)
        return local.info if local is not None else None

    async def _owner(self, session: str) -> str:
        if session in self.node.sessions:
            return self.node.node_id
        info = await self.node.fleet.lookup_session(session)
        if info is None or info.node_id == self.node.node_id:
            raise UnknownSession(session)
        return info.node_id

    async def _act(
        self,
        session: str,
        action: str,
        *,
        payload: bytes = b"",
        labels: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        owner = await self._owner(session)
        command = bus_pb2.Command(
            action=action, client_uuid=session, payload=payload, labels=labels or {}
        )
        if owner == self.node.node_id:
            status, body = execute_local(self.node, command)
            await self.node.flush_sessions()
        else:
            reply = await self.node.request(owner, action, session, payload=payload, labels=labels)
            status, body = reply.status, reply.body
        if status == "not_found":
            raise UnknownSession(session)
        if status != "ok":
            raise Conflict(body.decode("utf-8", "replace") or "the owner node refused")
        result: dict[str, Any] = orjson.loads(body)
        return result

    async def get_socket(self, session: str) -> dict[str, Any]:
        local = self._local(session)
        if local is not None:
            return local.to_dict()
        info = await self.node.fleet.lookup_session(session)
        if info is None:
            raise UnknownSession(session)
        return info.to_dict()

    async def send(self, session: str, payload: bytes) -> None:
        await self._act(session, "send", payload=payload)

    async def pause(self, session: str) -> None:
        await self._act(session, "pause")

    async def resume(self, session: str) -> None:
        await self._act(session, "resume")

    async def set_labels(self, session: str, labels: dict[str, str]) -> None:
        await self._act(session, "labels", labels=labels)

    async def close(self, session: str) -> None:
        await self._act(session, "close")

    async def broadcast(
        self, target: BroadcastTarget, label: tuple[str, str] | None, payload: bytes
    ) -> int:
        return await self.node.broadcast(target, label, payload)

    async def list_upstreams(self) -> list[dict[str, Any]]:
        fleet = self.node.fleet
        views = await fleet.health_views()
        items = []
        for spec in await fleet.list_upstreams():
            record = spec.to_dict()
            nodes = dict(views.get(spec.id, {}))
            link = self.node.pool.links.get(spec.id)
            if link is not None:
                nodes[self.node.node_id] = link.view()
            record["nodes"] = nodes
            items.append(record)
        return items

    async def add_upstream(self, spec: UpstreamSpec) -> dict[str, Any]:
        known = {existing.id for existing in await self.node.fleet.list_upstreams()}
        if spec.id in known:
            raise Conflict(f"upstream {spec.id} is already registered")
        await self.node.fleet.put_upstream(spec)
        await self._announce(spec.id)
        return spec.to_dict()

    async def remove_upstream(self, upstream_id: str) -> None:
        if not await self.node.fleet.remove_upstream(upstream_id):
            raise UnknownUpstream(upstream_id)
        await self._announce(upstream_id)

    async def drain_upstream(self, upstream_id: str) -> dict[str, Any]:
        specs = {spec.id: spec for spec in await self.node.fleet.list_upstreams()}
        spec = specs.get(upstream_id)
        if spec is None:
            raise UnknownUpstream(upstream_id)
        drained = UpstreamSpec(
            spec.host, spec.port, spec.ready_timeout, spec.alive_timeout, UpstreamMode.DRAINING
        )
        await self.node.fleet.put_upstream(drained)
        await self._announce(upstream_id)
        return drained.to_dict()

    async def _announce(self, upstream_id: str) -> None:
        from paradoxplex.shared import envelopes

        await self.node.reconcile_upstreams()
        if self.node.fleet.shared:
            await self.node.bus.control(
                envelopes.control(self.node.node_id, "reconcile", upstream_id)
            )

    async def drain_node(self, node_id: str) -> dict[str, Any]:
        if node_id != self.node.node_id:
            raise Conflict("a node can only drain itself; ask that node's admin API")
        self.node._spawn(self.node.stop(), "drain")
        return {"id": node_id, "draining": True, "at": time.time()}

    def live(self) -> bool:
        return True

    async def ready(self) -> tuple[bool, dict[str, Any]]:
        node = self.node
        listening = node._server is not None and node._server.is_serving()
        fleet = True
        if node.fleet.shared:
            try:
                fleet = await node.fleet.ping()
            except Exception:
                fleet = False
        upstreams = len(node.pool.balancer_members())
        detail: dict[str, Any] = {
            "listening": listening,
            "fleet": "ok" if fleet else "degraded",
            "upstreams_ready": upstreams,
            "draining": node.draining,
        }
        reasons = [
            reason
            for reason, failing in (
                ("not listening", not listening),
                ("fleet (Redis) unreachable", not fleet),
                ("draining", node.draining),
                ("no upstream in rotation", not upstreams),
            )
            if failing
        ]
        if reasons:
            detail["reason"] = "; ".join(reasons)
        return not reasons, detail

    def metrics(self) -> tuple[bytes, str]:
        return self.node.metrics.exposition()
