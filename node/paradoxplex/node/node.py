"""A balancer node: the conductor that builds, starts and stops its parts, and hosts sessions.

The parts, each in its own room:
- sessions (``session.Session``, one per socket) hosted here: opened, counted, closed;
- ``pool.UpstreamPool``: upstream links, and placing what sockets send on them;
- ``replies.ReplyRouter``: where upstream replies and broadcasts go;
- ``bus_endpoint.BusEndpoint``: this node's end of the fleet bus (forwarding, broadcasts,
  admin request/reply); ``commands.SocketCommands`` answers admin commands for local sockets;
- ``upkeep.FleetUpkeep``: registration, heartbeat, session copy, upstream reconciliation,
  resync and dead-node cleanup;
- the admin API (``paradoxplex.admin.app``) through ``control.NodeControl``.

Startup: fleet → listener → admin API → join the fleet (node, upstreams, links) → bus →
heartbeat. Shutdown (SIGTERM/SIGINT, or the admin drain): stop accepting, tell the fleet, let
sockets finish for ``drain_grace`` seconds, place what was read, close sockets (bounded
flush), close links, write and unregister, stop the parts; every step is time-bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Awaitable, Iterable
from typing import Any

from aiohttp import web

from paradoxplex.admin.app import AdminRunner, build_app
from paradoxplex.node.bus_endpoint import BusEndpoint
from paradoxplex.node.commands import SocketCommands
from paradoxplex.node.control import NodeControl
from paradoxplex.node.listener import Listener, stop_handshakes
from paradoxplex.node.metrics import Metrics
from paradoxplex.node.pool import UpstreamPool
from paradoxplex.node.probes import naming, reachable_host
from paradoxplex.node.replies import ReplyRouter
from paradoxplex.node.session import Session, SessionLimits
from paradoxplex.node.tasks import TaskSet
from paradoxplex.node.tls import ServerTls, admin_files, listener_files, upstream_credentials
from paradoxplex.node.upkeep import FleetUpkeep
from paradoxplex.node.upstream import UpstreamLink
from paradoxplex.shared.admission import Admission, Refusal, source_of
from paradoxplex.shared.buffers import ReplyBuffers
from paradoxplex.shared.config import NodeConfig
from paradoxplex.shared.errors import FleetUnavailable
from paradoxplex.shared.fleet import Backend, FleetBus, FleetState, NodeRecord
from paradoxplex.shared.sessions import SessionInfo, new_session_id
from paradoxplex.shared.upstreams import UpstreamSpec
from paradoxplex.wire import upstream_pb2 as pb

log = logging.getLogger("paradoxplex.node")


class Node:
    """One balancer process, on the fleet state and bus of ``backend`` (``backends``)."""

    def __init__(self, config: NodeConfig, backend: Backend) -> None:
        self.config = config
        self.node_id = config.node_id
        self.metrics = Metrics()
        self.fleet: FleetState = backend.state
        self.bus: FleetBus = backend.bus
        self.sessions: dict[str, Session] = {}
        self.admission = Admission(
            max_total=config.max_connections,
            max_per_source=config.max_connections_per_ip,
            rate=config.accept_rate,
        )
        self.buffers: ReplyBuffers[Session] = ReplyBuffers(limit=config.max_buffered)
        self.metrics.buffered.set_function(self._buffered)
        self.tasks = TaskSet()
        self.limits = SessionLimits(
            framing=config.framing,
            max_frame=config.max_frame,
            write_buffer=config.write_buffer,
            overflow=config.overflow,
            hold_timeout=config.hold_timeout,
            idle_timeout=config.idle_timeout,
            max_frames_per_second=config.max_frames_per_second,
        )
        self.endpoint = BusEndpoint(
            self.bus,
            node_id=self.node_id,
            metrics=self.metrics,
            tasks=self.tasks,
            owner_timeout=config.owner_timeout,
        )
        self.replies = ReplyRouter(
            node_id=self.node_id,
            sessions=self.sessions,
            fleet=self.fleet,
            outbox=self.endpoint,
            metrics=self.metrics,
            tasks=self.tasks,
        )
        self.tls = ServerTls.optional(listener_files(config))
        self.admin_tls = ServerTls.optional(admin_files(config))
        self.listener = Listener(
            lambda: Session(self, self.limits),
            metrics=self.metrics,
            tls=self.tls.context if self.tls else None,
            proxy_protocol=config.proxy_protocol,
            header_timeout=config.proxy_header_timeout,
        )
        self.pool = UpstreamPool(
            credentials=upstream_credentials(config),
            metrics=self.metrics,
            sessions=self.sessions,
            receive_reply=self.replies.receive_reply,
            routing=config.routing,
            queue_limit=config.upstream_queue,
            streams=config.streams,
            batch=config.batch == "auto",
            on_change=self._link_changed,
        )
        self.upkeep = FleetUpkeep(
            node_id=self.node_id,
            fleet=self.fleet,
            bus=self.bus,
            pool=self.pool,
            sessions=self.sessions,
            record=self.record,
            forget_owners=self.replies.forget_owners,
            metrics=self.metrics,
            tasks=self.tasks,
            heartbeat=config.heartbeat,
            node_ttl=config.node_ttl,
            lifecycle_events=config.lifecycle_events,
            on_registered=self._registered,
            on_fleet_lost=self._release_unregistered,
        )
        self.sync = self.upkeep.sync
        # sockets whose data waits until the fleet knows them (known from the first byte)
        self.unregistered: set[str] = set()
        self.commands = SocketCommands(self.sessions, write=self.upkeep.write_session)
        self.started_at = time.time()
        self.listen_address = ""
        self.admin_url = ""
        self.draining = False
        self._server: asyncio.Server | None = None
        self._admin: web.AppRunner | None = None
        self.stopped = asyncio.Event()
        self._stopping: asyncio.Future[None] | None = None

    @property
    def listening(self) -> bool:
        return self._server is not None and self._server.is_serving()

    @property
    def fleet_ok(self) -> bool:
        return self.upkeep.fleet_ok

    # startup and shutdown ---------------------------------------------------------------

    async def start(self) -> None:
        config = self.config
        await self.fleet.start()
        with naming("--listen", config.listen):
            self._server = await self.listener.start(config.listen, reuse_port=config.workers > 1)
        bound = self._server.sockets[0].getsockname()
        self.listen_address = f"{config.listen.host}:{bound[1]}"
        await self._start_admin()
        await self.upkeep.join(
            UpstreamSpec(
                address.host,
                address.port,
                config.ready_timeout,
                config.alive_timeout,
                tls=config.upstream_tls,
            )
            for address in config.upstream
        )
        await self.endpoint.start(
            self.replies,
            self.commands,
            on_control=self.upkeep.reconcile,
            on_reconnect=self.upkeep.resync,
        )
        self.upkeep.start()

    async def _start_admin(self) -> None:
        app = build_app(
            NodeControl(self),
            token=self.config.admin_token,
            metrics_public=self.config.metrics_public,
        )
        self._admin = AdminRunner(app, access_log=None, handle_signals=False)
        await self._admin.setup()
        site = web.TCPSite(
            self._admin,
            self.config.admin.host,
            self.config.admin.port,
            ssl_context=self.admin_tls.context if self.admin_tls else None,
        )
        with naming("--admin", self.config.admin):
            await site.start()
        port = self.config.admin.port
        for address in self._admin.addresses:  # the bound port, when asked for port 0
            port = address[1]
            break
        scheme = "https" if self.admin_tls else "http"
        self.admin_url = f"{scheme}://{reachable_host(self.config.admin.host)}:{port}"

    def reload_certificates(self) -> None:
        """SIGHUP: load the listener's and the admin API's certificates again (new handshakes
        use them; open sockets keep theirs; a bad file is logged and the old one kept)."""
        for tls in (self.tls, self.admin_tls):
            if tls is not None:
                tls.reload()

    def record(self) -> NodeRecord:
        return NodeRecord(
            node_id=self.node_id,
            listen=self.listen_address,
            admin_url=self.admin_url,
            started_at=self.started_at,
            sockets=len(self.sessions),
            extra={"draining": self.draining},
            state="draining" if self.draining else "up" if self.upkeep.registered() else "degraded",
            messages_in=self.metrics.traffic.messages_in,
            messages_out=self.metrics.traffic.messages_out,
            drops=self.metrics.dropped(),
            heartbeat_at=time.time(),
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
        await self.upkeep.announce_draining()
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
            held = any(s.flow.held for s in self.sessions.values())
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

    def request_stop(self) -> None:
        """Drain and stop in the background (the admin API's drain)."""
        self.tasks.spawn(self.stop(), "drain")

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
        await _bounded("unregister", self.upkeep.leave(), 3.0)
        await self.tasks.cancel_all(grace=3.0)
        await _bounded("close bus endpoint", self.endpoint.close(), 5.0)
        await _bounded("close fleet", self.fleet.close(), 3.0)
        if self._admin is not None:
            await _bounded("close admin API", self._admin.cleanup(), 3.0)
        if self._server is not None:
            self._server.close()
            await _bounded("close listener", self._server.wait_closed(), 2.0)
        await stop_handshakes(self.listener)
        self.stopped.set()
        log.info("node %s stopped", self.node_id)

    # SessionHost ------------------------------------------------------------------------

    def open_session(self, session: Session) -> SessionInfo | None:
        transport = session.transport
        peer = transport.get_extra_info("peername") if transport else None
        peer = peer if isinstance(peer, tuple) else None
        # the real client: a PROXY header's source, else the connection's peer
        host = session.peer.rpartition(":")[0] if session.peer else (str(peer[0]) if peer else "")
        source = source_of(host) if host else "unknown"
        now = time.monotonic()
        held = len(self.sessions)
        refusal = self.admission.admit(source, now, held=held, draining=self.draining)
        if refusal is not None:
            self.metrics.sockets_refused.labels(refusal.value).inc()
            count = self.admission.refused(source, now)
            if count:
                log.warning(REFUSED[refusal], count, source, held)
            return None
        session.source = source
        remote = session.peer or (f"{peer[0]}:{peer[1]}" if peer else "unknown")
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
        if self.fleet.shared and self.upkeep.registered():
            self.unregistered.add(info.uuid)  # nothing reaches an upstream before the fleet
        elif self.config.lifecycle_events:  # knows the socket (see _registered)
            self._lifecycle(info, pb.SocketEvent.CONNECTED, "")
        log.debug("socket %s open from %s", info.uuid, remote)
        return info

    def close_session(self, session: Session, reason: str) -> None:
        info = session.info
        if info is None or self.sessions.pop(info.uuid, None) is None:
            return
        self.admission.release(session.source)
        self.buffers.forget(session)
        self.pool.forget(info.uuid)
        self.unregistered.discard(info.uuid)
        dropped = session.flow.drop_all()
        if dropped:
            self.metrics.drops.labels("socket_closed").inc(dropped)
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

    def make_room(self, session: Session, size: int) -> bool:
        """Over ``max_buffered``: count every socket's share afresh; if the reply still does not
        fit, close the sockets with the most buffered (``ReplyBuffers.shed``)."""
        if self._buffered() + size <= self.buffers.limit:
            return True
        before = self.buffers.total
        victims = self.buffers.shed(session, size)
        for victim in victims:
            victim.abort("node buffer full")
        if victims:
            log.warning(
                "replies buffered for all sockets over max_buffered (%d bytes): closed %d "
                "socket(s) with the most buffered, %d bytes freed",
                self.buffers.limit,
                len(victims),
                before - self.buffers.total,
            )
        return session not in victims

    def _buffered(self) -> int:
        buffers = self.buffers
        for session in buffers.backlogged():
            transport = session.transport
            buffers.update(session, transport.get_write_buffer_size() if transport else 0)
        return buffers.total

    def submit(self, session: Session) -> None:
        if session.uuid in self.unregistered:
            session.placed(0)  # held (reading paused) until the fleet knows the socket
            return
        self.pool.submit(session)

    def _registered(self, infos: Iterable[SessionInfo]) -> None:
        """The fleet knows these sockets now: let their data (and CONNECTED event) go."""
        unregistered = self.unregistered
        if not unregistered:
            return
        for info in infos:
            if info.uuid in unregistered:
                self._let_go(info.uuid)

    def _release_unregistered(self) -> None:
        """The fleet cannot be written: serve every waiting socket locally anyway (an admin
        miss then asks the other nodes instead of the fleet state)."""
        for client_uuid in list(self.unregistered):
            self._let_go(client_uuid)

    def _let_go(self, client_uuid: str) -> None:
        self.unregistered.discard(client_uuid)
        session = self.sessions.get(client_uuid)
        if session is None or session.info is None:
            return
        if self.config.lifecycle_events:
            self._lifecycle(session.info, pb.SocketEvent.CONNECTED, "")
        if session.flow.held:
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

    def _link_changed(self, link: UpstreamLink) -> None:
        self.upkeep.link_changed(link)

    def __repr__(self) -> str:
        return f"<Node {self.node_id} sockets={len(self.sessions)} {self.pool!r}>"


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


REFUSED = {
    Refusal.DRAINING: "refused %d socket(s) from %s: draining (%d sockets held)",
    Refusal.MAX_CONNECTIONS: "refused %d socket(s) from %s: %d sockets held (max_connections)",
    Refusal.PER_IP: "refused %d socket(s) from %s: max_connections_per_ip (%d sockets held)",
    Refusal.ACCEPT_RATE: "refused %d socket(s) from %s: accept_rate (%d sockets held)",
}


def _reason_label(reason: str) -> str:
    """A bounded set of metric label values from free-text close reasons."""
    head = reason.split(":", 1)[0]
    return head if len(head) <= 40 else "other"
