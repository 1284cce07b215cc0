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
import dataclasses
import logging
import os
import socket
import time
from collections.abc import Awaitable, Iterator
from typing import Any

from paradoxplex.admin.app import AdminServer, build_app
from paradoxplex.node.admin_bridge import NodeControl
from paradoxplex.node.delivery.commands import SocketCommands
from paradoxplex.node.delivery.endpoint import BusEndpoint
from paradoxplex.node.delivery.replies import ReplyRouter
from paradoxplex.node.fleet.upkeep import FleetUpkeep
from paradoxplex.node.links.link import UpstreamLink
from paradoxplex.node.links.pool import UpstreamPool
from paradoxplex.node.metrics import Metrics
from paradoxplex.node.sockets.hosting import SessionHosting
from paradoxplex.node.sockets.listener import Listener, stop_handshakes
from paradoxplex.node.sockets.open_files import open_files_limit
from paradoxplex.node.sockets.session import NODE_FLOW, Session, SessionLimits
from paradoxplex.node.tasks import TaskSet
from paradoxplex.node.tls import ServerTls, admin_files, listener_files, upstream_credentials
from paradoxplex.shared.admission import Admission, socket_room
from paradoxplex.shared.config import Address, NodeConfig
from paradoxplex.shared.errors import ConfigError, FleetUnavailable
from paradoxplex.shared.fleet import Backend, FleetBus, FleetState, NodeRecord
from paradoxplex.shared.upstreams import UpstreamSpec

log = logging.getLogger("paradoxplex.node")


class Node:
    """One balancer process, on the fleet state and bus of ``backend`` (``backends``)."""

    def __init__(self, config: NodeConfig, backend: Backend) -> None:
        self.config = config
        self.node_id = config.node_id
        self.metrics = Metrics()
        self.fleet: FleetState = backend.state
        self.bus: FleetBus = backend.bus
        self.hosting = SessionHosting(
            node_id=self.node_id,
            metrics=self.metrics,
            admission=Admission(
                max_total=config.max_connections,
                fd_room=socket_room(open_files_limit()),
                max_per_source=config.max_connections_per_ip,
                rate=config.accept_rate,
            ),
            max_buffered=config.max_buffered,
            lifecycle_events=config.lifecycle_events,
            shared=self.fleet.shared,
        )
        self.sessions = self.hosting.sessions
        self.tasks = TaskSet()
        self.limits = SessionLimits(
            framing=config.framing,
            max_frame=config.max_frame,
            flow=dataclasses.replace(
                NODE_FLOW,
                write_buffer=config.write_buffer,
                overflow=config.overflow,
                hold_timeout=config.hold_timeout,
                idle_timeout=config.idle_timeout,
                rate=config.max_frames_per_second,
            ),
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
            lambda: Session(self.hosting, self.limits),
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
        self.metrics.max_connections.set(config.max_connections)
        self.metrics.upstreams_in_rotation.set_function(lambda: len(self.pool.balancer_members()))
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
            on_registered=self.hosting.registered,
            on_fleet_lost=self.hosting.release_unregistered,
        )
        self.sync = self.upkeep.sync
        self.hosting.serve(self.pool, self.sync, registered=self.upkeep.registered)
        self.commands = SocketCommands(self.sessions, write=self.upkeep.write_session)
        self.started_at = time.time()
        self.listen_address = ""
        self.admin_url = ""
        self._server: asyncio.Server | None = None
        self._admin: AdminServer | None = None
        self.stopped = asyncio.Event()
        self._stopping: asyncio.Future[None] | None = None

    @property
    def listening(self) -> bool:
        return self._server is not None and self._server.is_serving()

    @property
    def draining(self) -> bool:
        return self.hosting.draining

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
        self._admin = AdminServer(app)
        with naming("--admin", self.config.admin):
            _, port = await self._admin.start(  # the bound port, when asked for port 0
                self.config.admin.host,
                self.config.admin.port,
                self.admin_tls.context if self.admin_tls else None,
            )
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
        self.hosting.draining = True
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
            await _bounded("close admin API", self._admin.close(), 3.0)
        if self._server is not None:
            self._server.close()
            await _bounded("close listener", self._server.wait_closed(), 2.0)
        await stop_handshakes(self.listener)
        self.stopped.set()
        log.info("node %s stopped", self.node_id)

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


@contextlib.contextmanager
def naming(flag: str, address: Address) -> Iterator[None]:
    """Turn an OSError of binding ``address`` into a ConfigError naming the setting."""
    try:
        yield
    except OSError as error:
        reason = os.strerror(error.errno) if error.errno else str(error)
        reason = reason.lower()
        raise ConfigError(flag, f"cannot listen on {address}: {reason}") from None


def reachable_host(host: str) -> str:
    """An address other hosts can reach for a listener bound to ``host``: a wildcard
    becomes this machine's address (its host name's, else loopback)."""
    if host not in ("0.0.0.0", "::", ""):
        return host
    try:
        found = socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"
    return found
