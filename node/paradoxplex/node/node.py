"""A balancer node: the listener, its sessions, the upstream pool, the fleet and the admin API.

Startup: fleet → register node → upstream links → bus → listener → admin API.
Shutdown (SIGTERM/SIGINT): stop accepting, tell the fleet, let sockets finish for
``drain_grace`` seconds, place what was read, close sockets (bounded flush), close links,
unregister, exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import socket
import time
import uuid as uuidlib
from collections.abc import Awaitable
from typing import Any

from aiohttp import web

from paradoxplex.node.courier import Courier
from paradoxplex.node.fleet_sync import SessionSync
from paradoxplex.node.metrics import Metrics
from paradoxplex.node.pool import UpstreamPool
from paradoxplex.node.probes import naming as _naming
from paradoxplex.node.probes import reachable_host
from paradoxplex.node.session import Session, SessionLimits
from paradoxplex.node.tasks import checkpoint
from paradoxplex.node.upstream import UpstreamLink
from paradoxplex.shared import envelopes
from paradoxplex.shared.config import NodeConfig
from paradoxplex.shared.errors import FleetUnavailable, OwnerTimeout
from paradoxplex.shared.fleet import FleetBus, FleetState, MemoryBus, MemoryFleet, NodeRecord
from paradoxplex.shared.routing import (
    Forward,
    PublishBroadcast,
    Undeliverable,
    WriteLocal,
    route_broadcast,
    route_reply,
)
from paradoxplex.shared.sessions import BroadcastTarget, SessionInfo, new_session_id
from paradoxplex.shared.upstreams import UpstreamSpec
from paradoxplex.wire import bus_pb2
from paradoxplex.wire import upstream_pb2 as pb

log = logging.getLogger("paradoxplex.node")

OWNER_CACHE = 65_536
UNKNOWN_RETRY = (0.05, 0.1, 0.2, 0.4, 0.8)
UNKNOWN_LIMIT = 10_000


class Node:
    """One balancer process. ``fleet``/``bus`` default to the in-memory single node."""

    def __init__(
        self,
        config: NodeConfig,
        *,
        fleet: FleetState | None = None,
        bus: FleetBus | None = None,
    ) -> None:
        self.config = config
        self.node_id = config.node_id
        self.metrics = Metrics()
        self.fleet: FleetState = fleet or MemoryFleet()
        self.bus: FleetBus = bus or MemoryBus()
        self.sessions: dict[str, Session] = {}
        self.limits = SessionLimits(
            framing=config.framing,
            max_frame=config.max_frame,
            write_buffer=config.write_buffer,
            overflow=config.overflow,
            hold_timeout=config.hold_timeout,
            idle_timeout=config.idle_timeout,
        )
        self.pool = UpstreamPool(
            metrics=self.metrics,
            sessions=self.sessions,
            receive_reply=self.receive_reply,
            routing=config.routing,
            queue_limit=config.upstream_queue,
            streams=config.streams,
            batch=config.batch == "auto",
            on_change=self._link_changed,
        )
        self.sync = SessionSync(
            self.fleet, self._local_infos, on_error=self._fleet_failed, ready=self._registered
        )
        self.courier = Courier(
            lambda: self.bus, self.metrics, sender=self.node_id, on_undelivered=self._forget_owner
        )
        self.started_at = time.time()
        self.listen_address = ""
        self.admin_url = ""
        self.draining = False
        self.fleet_ok = True
        self._server: asyncio.Server | None = None
        self._admin: web.AppRunner | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._pending: dict[str, asyncio.Future[bus_pb2.CommandReply]] = {}
        self._owners: dict[str, str] = {}
        self._unknown_retries = 0
        self._stopped = asyncio.Event()
        self._stopping: asyncio.Future[None] | None = None

    # startup and shutdown ---------------------------------------------------------------

    async def start(self) -> None:
        config = self.config
        await self.fleet.start()
        with _naming("--listen", config.listen):
            self._server = await asyncio.get_running_loop().create_server(
                lambda: Session(self, self.limits),
                config.listen.host,
                config.listen.port,
                reuse_port=config.workers > 1 or None,
                backlog=1024,
            )
        bound = self._server.sockets[0].getsockname()
        self.listen_address = f"{config.listen.host}:{bound[1]}"
        await self._start_admin()
        await self.fleet.register_node(self.record(), ttl=config.node_ttl)
        for address in config.upstream:
            spec = UpstreamSpec(
                address.host, address.port, config.ready_timeout, config.alive_timeout
            )
            await self.fleet.put_upstream(spec)
        await self.reconcile_upstreams()
        await self.bus.start(self.node_id, self.receive_envelope)
        self._spawn(self.sync.run(), "session sync")
        self._spawn(self._heartbeat(), "heartbeat")

    async def _start_admin(self) -> None:
        from paradoxplex.admin.app import build_app
        from paradoxplex.node.control import NodeControl

        app = build_app(
            NodeControl(self),
            token=self.config.admin_token,
            metrics_public=self.config.metrics_public,
        )
        self._admin = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._admin.setup()
        site = web.TCPSite(self._admin, self.config.admin.host, self.config.admin.port)
        with _naming("--admin", self.config.admin):
            await site.start()
        server = site._server
        port = self.config.admin.port
        sockets = getattr(server, "sockets", None)  # uvloop's Server is no asyncio.Server
        if sockets:
            port = sockets[0].getsockname()[1]
        self.admin_url = f"http://{reachable_host(self.config.admin.host)}:{port}"

    def record(self) -> NodeRecord:
        return NodeRecord(
            node_id=self.node_id,
            listen=self.listen_address,
            admin_url=self.admin_url,
            started_at=self.started_at,
            sockets=len(self.sessions),
            extra={"draining": self.draining},
        )

    async def drain(self, grace: float | None = None) -> None:
        """Stop accepting; let sockets finish for ``grace`` seconds; then close them."""
        if self.draining:
            return
        self.draining = True
        grace = self.config.drain_grace if grace is None else grace
        log.info(
            "node %s draining: %d sockets, grace %.1fs", self.node_id, len(self.sessions), grace
        )
        if self._server is not None:
            self._server.close()
        with contextlib.suppress(FleetUnavailable):
            await self.fleet.heartbeat(self.record(), ttl=self.config.node_ttl)
        deadline = time.monotonic() + grace
        while self.sessions and time.monotonic() < deadline:  # noqa: ASYNC110 - bounded
            await asyncio.sleep(0.05)
        await self._flush_reads(deadline=time.monotonic() + 5.0)
        await self._close_sessions("node shutting down")

    async def _flush_reads(self, *, deadline: float) -> None:
        """Place every frame already read, and let the links send their queues."""
        for session in list(self.sessions.values()):
            session.set_paused(True)
        while time.monotonic() < deadline:
            held = any(s.held for s in self.sessions.values())
            queued = any(link.queue for link in self.pool.links.values() if link.in_rotation)
            if not held and not queued:
                return
            await asyncio.sleep(0.02)
        log.warning("shutdown: some read data could not be sent to an upstream in time")

    async def _close_sessions(self, reason: str, *, flush: float = 2.0) -> None:
        for session in list(self.sessions.values()):
            session.close(reason)
        deadline = time.monotonic() + flush
        while self.sessions and time.monotonic() < deadline:  # noqa: ASYNC110 - bounded
            await asyncio.sleep(0.02)
        for session in list(self.sessions.values()):
            session.abort(reason)
        await asyncio.sleep(0)

    async def stop(self) -> None:
        """Drain, then release everything. Every caller (signal, admin drain) waits for the
        one shutdown in progress; a second call never cuts the first one's grace short."""
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._stop())
        await asyncio.shield(self._stopping)

    async def _stop(self) -> None:
        await self.drain()
        await _bounded("close upstream links", self.pool.close(grace=2.0), 5.0)
        await _bounded("write sessions", self.sync.flush(), 3.0)
        await _bounded("unregister", self.fleet.unregister_node(self.node_id), 3.0)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=3.0)
            for task in pending:
                stack = io.StringIO()
                task.print_stack(limit=12, file=stack)
                log.warning(
                    "shutdown: task %r ignored cancellation for 3s\n%s",
                    task.get_name(),
                    stack.getvalue(),
                )
        await _bounded("close courier", self.courier.close(), 2.0)
        await _bounded("close bus", self.bus.close(), 3.0)
        await _bounded("close fleet", self.fleet.close(), 3.0)
        if self._admin is not None:
            await _bounded("close admin API", self._admin.cleanup(), 3.0)
        if self._server is not None:
            self._server.close()
            await _bounded("close listener", self._server.wait_closed(), 2.0)
        self._stopped.set()
        log.info("node %s stopped", self.node_id)

    def _spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("task %s failed", task.get_name(), exc_info=task.exception())

    # SessionHost ------------------------------------------------------------------------

    def open_session(self, session: Session) -> SessionInfo | None:
        if len(self.sessions) >= self.config.max_connections or self.draining:
            self.metrics.sockets_refused.inc()
            log.warning("refused a socket: %d sockets held (max_connections)", len(self.sessions))
            return None
        transport = session.transport
        peer = transport.get_extra_info("peername") if transport else None
        remote = f"{peer[0]}:{peer[1]}" if peer else "unknown"
        info = SessionInfo(new_session_id(), self.node_id, remote, time.time())
        self.sessions[info.uuid] = session
        self.metrics.sockets_opened.inc()
        self.metrics.sockets.set(len(self.sessions))
        if transport is not None:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sync.added(info)
        if self.config.lifecycle_events:
            self._lifecycle(info, pb.SocketEvent.CONNECTED, "")
        log.debug("socket %s open from %s", info.uuid, remote)
        return info

    def close_session(self, session: Session, reason: str) -> None:
        info = session.info
        if info is None or self.sessions.pop(info.uuid, None) is None:
            return
        self.pool.forget(info.uuid)
        if session.held:
            self.metrics.drops.labels("socket_closed").inc(len(session.held))
            session.held.clear()
        self.metrics.sockets.set(len(self.sessions))
        self.metrics.sockets_closed.labels(_reason_label(reason)).inc()
        self.sync.removed(info)
        if self.config.lifecycle_events:
            self._lifecycle(info, pb.SocketEvent.DISCONNECTED, reason)
        log.debug(
            "socket %s closed: %s; %d bytes in, %d out, %.1fs",
            info.uuid,
            reason,
            info.bytes_in,
            info.bytes_out,
            time.time() - info.connected_at,
        )

    def submit(self, session: Session) -> None:
        self.pool.submit(session)

    def upstream_ready(self) -> bool:
        return self.pool.ready()

    def _lifecycle(self, info: SessionInfo, kind: int, reason: str) -> None:
        event = pb.SocketEvent(
            kind=kind,  # type: ignore[arg-type]
            remote_address=info.remote,
            node_id=info.node_id,
            reason=reason,
        )
        self.pool.send_event(info.uuid, event)

    def _local_infos(self) -> list[SessionInfo]:
        return [s.info for s in self.sessions.values() if s.info is not None]

    # replies ----------------------------------------------------------------------------

    def receive_reply(self, reply: pb.OutputStreamRequest) -> Awaitable[None] | None:
        """Route one upstream reply. Local writes happen at once; the rest returns a coroutine."""
        target = reply.WhichOneof("target")
        if target == "client_uuid":
            session = self.sessions.get(reply.client_uuid)
            if session is not None:
                session.write(reply.payload)
                return None
            owner = self._owners.get(reply.client_uuid)
            if owner is not None:  # known remote socket: queue without a coroutine
                if self.courier.send_nowait(owner, reply.client_uuid, reply.payload):
                    return None
                return self.courier.send(owner, reply.client_uuid, reply.payload)
            return self._reply_elsewhere(reply.client_uuid, reply.payload)
        if target == "broadcast":
            chosen = _TARGETS.get(reply.broadcast)
            if chosen is None:
                self.metrics.bad_input.labels("unknown_broadcast").inc()
                return None
            return self._broadcast_reply(chosen, _label(reply.broadcast_label), reply.payload)
        self.metrics.bad_input.labels("reply_without_target").inc()
        log.warning("an upstream sent a reply with no target; ignored")
        return None

    async def _broadcast_reply(
        self, target: BroadcastTarget, label: tuple[str, str] | None, payload: bytes
    ) -> None:
        await self.broadcast(target, label, payload)

    async def _reply_elsewhere(self, session: str, payload: bytes) -> None:
        owner = await self._owner_of(session)
        if owner is None and self.fleet.shared and self._unknown_retries < UNKNOWN_LIMIT:
            # a socket that just connected elsewhere may not be in the fleet state yet
            self._spawn(self._retry_unknown(session, payload), "retry unknown socket")
            return
        action = route_reply(session, payload, is_local=self.sessions.__contains__, owner=owner)
        await self._run(action)

    async def _retry_unknown(self, session: str, payload: bytes) -> None:
        """Look the owner up again for ~1.5 s before calling the socket unknown."""
        self._unknown_retries += 1
        try:
            owner = None
            for delay in UNKNOWN_RETRY:
                await asyncio.sleep(delay)
                owner = await self._owner_of(session)
                if owner is not None or session in self.sessions:
                    break
            local = self.sessions.__contains__
            await self._run(route_reply(session, payload, is_local=local, owner=owner))
        finally:
            self._unknown_retries -= 1

    async def _owner_of(self, session: str) -> str | None:
        owner = self._owners.get(session)
        if owner is not None:
            return owner
        if not self.fleet.shared:
            return None
        try:
            info = await self.fleet.lookup_session(session)
        except FleetUnavailable:
            self.metrics.fleet_errors.inc()
            return None
        if info is None or info.node_id == self.node_id:
            return None
        if len(self._owners) >= OWNER_CACHE:
            self._owners.clear()
        self._owners[session] = info.node_id
        return info.node_id

    async def _run(self, action: WriteLocal | Forward | PublishBroadcast | Undeliverable) -> None:
        if isinstance(action, WriteLocal):
            session = self.sessions.get(action.session)
            if session is not None:
                session.write(action.payload)
        elif isinstance(action, Forward):
            await self._forward(action)
        elif isinstance(action, PublishBroadcast):
            data = envelopes.broadcast(
                self.node_id, action.target, action.label, action.payload, sent_at=time.time()
            )
            await self._publish(self.bus.broadcast(data))
        else:
            self.metrics.drops.labels("unknown_socket").inc()
            log.info("reply for unknown socket %s dropped (%s)", action.session, action.reason)

    async def _forward(self, action: Forward) -> None:
        await self.courier.send(action.node_id, action.session, action.payload)

    def _forget_owner(self, node_id: str) -> None:
        """Replies to ``node_id`` went undelivered: look its sockets' owners up again."""
        for session in [s for s, owner in self._owners.items() if owner == node_id]:
            del self._owners[session]

    async def _publish(self, send: Awaitable[None]) -> None:
        try:
            await send
            self.metrics.bus_messages.labels("out").inc()
        except FleetUnavailable:
            self.metrics.fleet_errors.inc()
            self.metrics.drops.labels("fleet_unavailable").inc()

    async def broadcast(
        self, target: BroadcastTarget, label: tuple[str, str] | None, payload: bytes
    ) -> int:
        """Write to each matching local socket once, and publish once for the other nodes."""
        infos = self._local_infos()
        actions = route_broadcast(infos, target, label, payload, fleet=self.fleet.shared)
        written = 0
        for action in actions:
            if isinstance(action, WriteLocal):
                session = self.sessions.get(action.session)
                written += bool(session is not None and session.write(action.payload))
            else:
                await self._run(action)
        return written

    # the bus ----------------------------------------------------------------------------

    async def receive_envelope(self, data: bytes) -> None:
        try:
            envelope = envelopes.parse(data)
        except Exception:
            self.metrics.bad_input.labels("bus_envelope").inc()
            log.warning("dropped an undecodable bus envelope of %d bytes", len(data))
            return
        self.metrics.bus_messages.labels("in").inc()
        body = envelope.WhichOneof("body")
        if envelope.sent_at and body in ("deliver_batch", "broadcast"):
            self.metrics.bus_delivery.observe(max(0.0, time.time() - envelope.sent_at))
        if body == "deliver_batch":
            for item in envelope.deliver_batch.items:
                self._deliver(item)
        elif body == "broadcast" and envelope.sender != self.node_id:
            self._deliver_broadcast(envelope.broadcast)
        elif body == "command":  # answered in a task: the bus reads inline, keep it quick
            self._spawn(self._answer(envelope.sender, envelope.command), "answer command")
        elif body == "reply":
            future = self._pending.pop(envelope.reply.request_id, None)
            if future is not None and not future.done():
                future.set_result(envelope.reply)
        elif body == "control":
            self._spawn(self.reconcile_upstreams(), "reconcile upstreams")

    def _deliver(self, message: bus_pb2.Deliver) -> None:
        session = self.sessions.get(message.client_uuid)
        if session is None:
            self.metrics.drops.labels("unknown_socket").inc()
            log.info("forwarded reply for socket %s, which is gone", message.client_uuid)
            return
        session.write(message.payload)

    def _deliver_broadcast(self, message: bus_pb2.Broadcast) -> None:
        try:
            target = BroadcastTarget(message.target)
        except ValueError:
            self.metrics.bad_input.labels("bus_envelope").inc()
            return
        label = _label(message.label)
        for action in route_broadcast(
            self._local_infos(), target, label, message.payload, fleet=False
        ):
            if isinstance(action, WriteLocal):
                session = self.sessions.get(action.session)
                if session is not None:
                    session.write(action.payload)

    async def _answer(self, sender: str, command: bus_pb2.Command) -> None:
        from paradoxplex.node.control import execute_local

        if command.deadline and time.time() > command.deadline:
            self.metrics.drops.labels("command_expired").inc()
            log.warning(
                "admin command %s for socket %s arrived after its requester gave up; dropped",
                command.action,
                command.client_uuid,
            )
            return
        status, body = execute_local(self, command)
        await self.flush_sessions()
        data = envelopes.reply(self.node_id, command.request_id, status, body)
        try:
            await self.bus.send(sender, data)
        except FleetUnavailable:
            self.metrics.fleet_errors.inc()

    async def flush_sessions(self) -> None:
        """Write queued session changes now: an admin action is visible fleet-wide once answered."""
        if self.sync.pending:
            with contextlib.suppress(FleetUnavailable):
                await self.sync.flush()

    async def request(
        self,
        owner: str,
        action: str,
        session: str,
        *,
        payload: bytes = b"",
        labels: dict[str, str] | None = None,
    ) -> bus_pb2.CommandReply:
        """Ask the owner node to act on its socket; OwnerTimeout after ``owner_timeout``."""
        request_id = uuidlib.uuid4().hex
        future: asyncio.Future[bus_pb2.CommandReply] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        deadline = time.time() + self.config.owner_timeout
        data = envelopes.command(
            self.node_id,
            request_id,
            action,
            session,
            payload=payload,
            labels=labels,
            deadline=deadline,
        )
        try:
            async with asyncio.timeout(self.config.owner_timeout):
                if not await self.bus.send(owner, data):
                    raise OwnerTimeout(session, owner)
                return await future
        except TimeoutError:
            raise OwnerTimeout(session, owner) from None
        finally:
            self._pending.pop(request_id, None)

    # upstreams and fleet upkeep ---------------------------------------------------------

    async def reconcile_upstreams(self) -> None:
        """Open links to registered upstreams, drain and close the rest."""
        try:
            specs = {spec.id: spec for spec in await self.fleet.list_upstreams()}
        except FleetUnavailable:
            self.metrics.fleet_errors.inc()
            return
        for spec in specs.values():
            link = self.pool.links.get(spec.id)
            if link is None:
                self.pool.add(spec)
            elif spec.mode.value == "draining":
                link.drain()
        for upstream_id in list(self.pool.links):
            if upstream_id not in specs:
                self._spawn(self.pool.remove(upstream_id), f"remove {upstream_id}")

    def _link_changed(self, link: UpstreamLink) -> None:
        if self.fleet.shared:
            self._spawn(self._publish_health(link), f"health {link.id}")

    async def _publish_health(self, link: UpstreamLink) -> None:
        with contextlib.suppress(FleetUnavailable):
            await self.fleet.set_health(self.node_id, link.id, link.view())

    def _fleet_failed(self) -> None:
        self.metrics.fleet_errors.inc()
        self.fleet_ok = False

    async def _heartbeat(self) -> None:
        while True:
            try:
                await self._beat()
            except FleetUnavailable as error:
                if self.fleet_ok:
                    log.warning("fleet unavailable, serving local sockets only: %s", error.reason)
                self.fleet_ok = False
                self.metrics.fleet_errors.inc()
            checkpoint()
            await asyncio.sleep(self.config.heartbeat)

    async def _beat(self) -> None:
        if not self.fleet_ok and await self.fleet.ping():
            await self.resync()
        await self.fleet.heartbeat(self.record(), ttl=self.config.node_ttl)
        if not self.fleet.shared:
            return
        self._sync_counters()
        for link in list(self.pool.links.values()):
            await self.fleet.set_health(self.node_id, link.id, link.view())
        from paradoxplex.node.reaper import reap_dead_nodes

        await reap_dead_nodes(self)
        self.fleet_ok = True

    def _sync_counters(self) -> None:
        """Queue the sessions whose counters moved since the last heartbeat."""
        for session in self.sessions.values():
            info = session.info
            if info is not None and session.synced_io != info.bytes_in + info.bytes_out:
                session.synced_io = info.bytes_in + info.bytes_out
                self.sync.changed(info)

    def _registered(self) -> bool:
        """Whether session writes may go to the fleet: this node is registered there."""
        return self.fleet_ok and getattr(self.bus, "connected", True)

    async def resync(self) -> None:
        """The fleet came back (maybe empty): register this node, its sessions and upstreams."""
        self.fleet_ok = False  # no session writes before the node's own record is back
        await self.fleet.register_node(self.record(), ttl=self.config.node_ttl)
        known = {spec.id for spec in await self.fleet.list_upstreams()}
        for link in self.pool.links.values():
            if link.id not in known:
                await self.fleet.put_upstream(link.spec)
        self.sync.resync()
        self._owners.clear()
        self.fleet_ok = True
        log.info("fleet reachable again: node, %d sockets re-registered", len(self.sessions))

    def __repr__(self) -> str:
        return f"<Node {self.node_id} sockets={len(self.sessions)} {self.pool!r}>"


_TARGETS = {
    pb.BROADCAST_ALL: BroadcastTarget.ALL,
    pb.BROADCAST_ACTIVE: BroadcastTarget.ACTIVE,
    pb.BROADCAST_NOT_ACTIVE: BroadcastTarget.INACTIVE,
}


async def _bounded(step: str, work: Awaitable[Any], seconds: float) -> None:
    """One shutdown step, at most ``seconds`` long; a step that fails or overruns is logged
    and shutdown goes on: a stuck dependency must not keep the process from exiting."""
    try:
        async with asyncio.timeout(seconds):
            await work
    except TimeoutError:
        log.warning("shutdown: %s did not finish within %gs; going on", step, seconds)
    except FleetUnavailable as error:
        log.info("shutdown: %s skipped, fleet unavailable: %s", step, error.reason)
    except Exception:
        log.exception("shutdown: %s failed; going on", step)


def _label(text: str) -> tuple[str, str] | None:
    if not text:
        return None
    key, _, value = text.partition("=")
    return key, value


def _reason_label(reason: str) -> str:
    """A bounded set of metric label values from free-text close reasons."""
    head = reason.split(":", 1)[0]
    return head if len(head) <= 40 else "other"
