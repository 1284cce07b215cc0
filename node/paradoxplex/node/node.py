"""A balancer node: the conductor that builds, starts and stops its parts.

The parts, each in its own room, built in the order they depend on each other (each is whole
when built; what several read is the small ``NodeState``):
- ``NodeState``: the node id, the sockets held, whether it drains, where it listens;
- ``replies.ReplyRouter``: where upstream replies and broadcasts go, leaving for other nodes
  through ``endpoint.BusOutbox``; the owner cache (``replies.Owners``) is theirs to share;
- ``pool.UpstreamPool``: upstream links, and placing what sockets send on them;
- ``hold.FirstByteHold``: a new socket's data waits until the fleet knows it;
- ``upkeep.FleetUpkeep``: registration, heartbeat, session copy, upstream reconciliation,
  resync and dead-node cleanup (``FleetStatus``: whether the node is in the fleet now);
- ``hosting.SessionHosting``: sockets admitted, opened, counted, closed (``session.Session``,
  one per socket, made by the ``listener.Listener``);
- ``endpoint.BusEndpoint``: this node's end of the fleet bus (what comes in, admin
  request/reply); ``commands.SocketCommands`` answers admin commands for local sockets;
- the admin API (``paradoxplex.admin.app``) through ``admin_bridge.NodeControl``.

Startup: fleet → listener → admin API → join the fleet (claim the node id for this
incarnation, removing an earlier one's sockets; upstreams, links) → bus → heartbeat; with
lifecycle events owed for the earlier incarnation's sockets, up to ``ready_timeout`` s for an
upstream to take them; then the handoff offer (``--handoff-socket``). A start that fails (the
node id is held by a live process) closes what it opened. Shutdown (SIGTERM/SIGINT, or the
admin drain): stop accepting, tell the fleet, let sockets finish for ``drain_grace`` seconds,
place what was read, close sockets (bounded flush), close links, write and unregister, stop
the parts; every step is time-bounded.

A hot handoff (``paradoxplex.node.handoff``): ``take_over`` instead of ``start`` makes this
process the node another process was, with its listener, sockets, bus position and
incarnation (the node lives on: no new claim, nothing removed); the old process, once
everything went, stops through ``handed_over`` (no drain, no unregistering). The node is both
sides' ``Serving``: its listening sockets, as they move.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import socket
import time
from collections.abc import Awaitable, Iterable, Iterator
from typing import Any

from paradoxplex.admin.app import AdminServer, build_app
from paradoxplex.node.admin_bridge import NodeControl
from paradoxplex.node.delivery.commands import SocketCommands
from paradoxplex.node.delivery.endpoint import BusEndpoint, BusOutbox
from paradoxplex.node.delivery.replies import Owners, ReplyRouter
from paradoxplex.node.fleet.upkeep import FleetStatus, FleetUpkeep, HealthViews
from paradoxplex.node.handoff.new import Handshake, TakeOver
from paradoxplex.node.handoff.old import HandoffOffer
from paradoxplex.node.handoff.terms import terms_of
from paradoxplex.node.links.pool import UpstreamPool
from paradoxplex.node.metrics import Metrics, build_version
from paradoxplex.node.sockets.hold import FirstByteHold
from paradoxplex.node.sockets.hosting import SessionHosting
from paradoxplex.node.sockets.listener import Listener, stop_handshakes
from paradoxplex.node.sockets.open_files import open_files_limit
from paradoxplex.node.sockets.session import NODE_FLOW, Session, SessionLimits
from paradoxplex.node.state import NodeState
from paradoxplex.node.tasks import TaskSet
from paradoxplex.node.tls import ServerTls, admin_files, listener_files, upstream_credentials
from paradoxplex.shared.admission import Admission, socket_room
from paradoxplex.shared.config import Address, NodeConfig
from paradoxplex.shared.errors import ConfigError, FleetUnavailable
from paradoxplex.shared.fleet import Backend, FleetBus, FleetState
from paradoxplex.shared.unacked import UnackedLimits, UnackedTotals
from paradoxplex.shared.upstreams import UpstreamSpec

log = logging.getLogger("paradoxplex.node")


class Node:
    """One balancer process, on the fleet state and bus of ``backend`` (``backends``)."""

    def __init__(self, config: NodeConfig, backend: Backend) -> None:
        self.config = config
        self.node_id = config.node_id
        self.fleet: FleetState = backend.state
        self.bus: FleetBus = backend.bus
        self.metrics = metrics = Metrics()
        self.tasks = tasks = TaskSet()
        self.state = state = NodeState(config.node_id, started_at=time.time())
        self.sessions = state.sessions
        self.status = FleetStatus(self.bus, metrics)
        owners = Owners()
        self.outbox = BusOutbox(
            self.bus, node_id=self.node_id, metrics=metrics, on_undelivered=owners.forget_node
        )
        self.replies = ReplyRouter(
            node_id=self.node_id,
            sessions=state.sessions,
            fleet=self.fleet,
            owners=owners,
            outbox=self.outbox,
            metrics=metrics,
            tasks=tasks,
        )
        health = HealthViews(self.fleet, node_id=self.node_id, tasks=tasks)
        self.pool = UpstreamPool(
            metrics=metrics,
            sessions=state.sessions,
            receive_reply=self.replies.receive_reply,
            on_change=health.link_changed,
            credentials=upstream_credentials(config),
            routing=config.routing,
            queue_limit=config.upstream_queue,
            streams=config.streams,
            batch=config.batch == "auto",
            node_id=config.node_id,
            max_deliveries=config.max_deliveries,
            unacked=UnackedLimits(config.max_unacked, config.max_unacked_bytes),
            totals=UnackedTotals(
                max_messages=config.max_unacked_node, max_bytes=config.max_unacked_node_bytes
            ),
            retry_budget=config.retry_budget,
            hold_timeout=config.hold_timeout,
        )
        metrics.max_connections.set(config.max_connections)
        metrics.upstreams_in_rotation.set_function(lambda: len(self.pool.balancer_members()))
        self.hold = FirstByteHold(
            sessions=state.sessions,
            pool=self.pool,
            shared=self.fleet.shared,
            registered=self.status.registered,
            lifecycle_events=config.lifecycle_events,
        )
        self.upkeep = FleetUpkeep(
            state,
            fleet=self.fleet,
            status=self.status,
            health=health,
            pool=self.pool,
            forget_owners=owners.clear,
            metrics=metrics,
            tasks=tasks,
            heartbeat=config.heartbeat,
            node_ttl=config.node_ttl,
            lifecycle_events=config.lifecycle_events,
            on_registered=self.hold.registered,
            on_fleet_lost=self.hold.release_all,
            on_replaced=self.request_stop,
        )
        self.sync = self.upkeep.sync
        self.hosting = SessionHosting(
            state,
            pool=self.pool,
            hold=self.hold,
            sync=self.sync,
            metrics=metrics,
            admission=admission(config),
            max_buffered=config.max_buffered,
            lifecycle_events=config.lifecycle_events,
        )
        self.limits = session_limits(config)
        self.tls = ServerTls.optional(listener_files(config))
        self.admin_tls = ServerTls.optional(admin_files(config))
        self.listener = Listener(
            lambda: Session(self.hosting, self.limits),
            metrics=metrics,
            tls=self.tls.context if self.tls else None,
            proxy_protocol=config.proxy_protocol,
            header_timeout=config.proxy_header_timeout,
        )
        self.commands = SocketCommands(
            state.sessions, write=self.upkeep.write_session, metrics=metrics
        )
        self.endpoint = BusEndpoint(
            self.bus,
            outbox=self.outbox,
            deliveries=self.replies,
            commands=self.commands,
            on_control=self.upkeep.reconcile,
            on_reconnect=self.upkeep.resync,
            node_id=self.node_id,
            metrics=metrics,
            tasks=tasks,
            owner_timeout=config.owner_timeout,
            holds_id=lambda: self.status.replaced_by is None,
        )
        self.offer = (
            HandoffOffer(
                config.handoff_socket,
                terms=terms_of(config),
                version=build_version(),
                state=state,
                hosting=self.hosting,
                pool=self.pool,
                endpoint=self.endpoint,
                commands=self.commands,
                upkeep=self.upkeep,
                status=self.status,
                serving=self,
                handed_over=self.handed_over,
                metrics=metrics,
                drain_grace=config.drain_grace,
            )
            if config.handoff_socket
            else None
        )
        self.takeover: TakeOver | None = None
        self._server: asyncio.Server | None = None
        self._admin: AdminServer | None = None
        self.stopped = asyncio.Event()
        self._stopping: asyncio.Future[None] | None = None

    @property
    def listening(self) -> bool:
        return self._server is not None and self._server.is_serving()

    @property
    def draining(self) -> bool:
        return self.state.draining

    @property
    def fleet_ok(self) -> bool:
        return self.status.ok

    @property
    def listen_address(self) -> str:
        return self.state.listen_address

    @property
    def admin_url(self) -> str:
        return self.state.admin_url

    # startup and shutdown ---------------------------------------------------------------

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self._abandon_start()
            raise

    async def _start(self) -> None:
        config = self.config
        await self.fleet.start()
        with naming("--listen", config.listen):
            self._server = await self.listener.start(config.listen, reuse_port=config.workers > 1)
        bound = self._server.sockets[0].getsockname()
        self.state.listen_address = f"{config.listen.host}:{bound[1]}"
        await self._start_admin(self._server)
        await self.upkeep.join(upstream_specs(config))
        await self.endpoint.start()
        self.upkeep.start()
        await self._place_owed_events(config.ready_timeout)
        await self._offer()

    async def _place_owed_events(self, seconds: float) -> None:
        """Let an upstream take the DISCONNECTED events owed for an earlier incarnation's
        sockets before the node says it started (at most ``seconds``: a node starts while its
        upstreams are down, and they are sent when one is ready)."""
        if not self.pool.owed:
            return
        try:
            async with asyncio.timeout(seconds):
                await self.pool.owed_placed()
        except TimeoutError:
            log.warning(
                "%d DISCONNECTED events for an earlier incarnation's sockets wait for an "
                "upstream to be ready",
                len(self.pool.owed),
            )

    async def _abandon_start(self) -> None:
        """Close what a failed start opened (the process may live on: tests, --workers)."""
        if self._admin is not None:
            await _bounded("close admin API", self._admin.close(), 3.0)
        if self._server is not None:
            self._server.close()
            await _bounded("close listener", self._server.wait_closed(), 2.0)
        await _bounded("close upstream links", self.pool.close(grace=0.0), 3.0)
        await self.tasks.cancel_all(grace=1.0)
        await _bounded("close bus endpoint", self.endpoint.close(), 3.0)
        await _bounded("close fleet", self.fleet.close(), 3.0)

    async def _offer(self) -> None:
        if self.offer is not None and self.config.handoff_socket:
            try:
                await self.offer.start()
            except OSError as error:
                reason = os.strerror(error.errno).lower() if error.errno else str(error)
                raise ConfigError("--handoff-socket", reason) from None

    async def take_over(self, handshake: Handshake) -> None:
        """Become the node the process behind ``handshake`` is (instead of ``start``); raises
        ``HandoffError`` when it did not happen (that process serves on). The node lives on:
        this process is its incarnation, started when it was (before any part writes them)."""
        if handshake.incarnation:  # "" from a release before incarnations: a new one
            self.state.incarnation = handshake.incarnation
            self.state.started_at = handshake.started_at or self.state.started_at
        await self.fleet.start()
        self.takeover = takeover = TakeOver(
            handshake,
            state=self.state,
            hosting=self.hosting,
            new_session=lambda: Session(self.hosting, self.limits),
            pool=self.pool,
            router=self.replies,
            endpoint=self.endpoint,
            commands=self.commands,
            upkeep=self.upkeep,
            serving=self,
            metrics=self.metrics,
            upstreams=upstream_specs(self.config),
            max_frame=self.config.max_frame,
        )
        await takeover.run()
        self.tasks.spawn(takeover.adopted(), "refresh taken-over sockets")
        self.tasks.spawn(self._offer_after(takeover), "handoff relay")

    async def _offer_after(self, takeover: TakeOver) -> None:
        """Offer this node in turn once the old process is done relaying."""
        await takeover.wait_relay()
        try:
            await self._offer()
        except ConfigError as error:
            log.warning("cannot offer a handoff: %s", error)

    # both sides' Serving ----------------------------------------------------------------

    def listening_sockets(self) -> tuple[socket.socket | None, socket.socket | None]:
        listener = None
        if self._server is not None and self._server.sockets:
            listener = socket.socket(fileno=os.dup(self._server.sockets[0].fileno()))
        admin = self._admin.listening_socket() if self._admin is not None else None
        return listener, admin

    async def stop_listening(self) -> None:
        if self._server is not None:
            self._server.close()
        if self._admin is not None:
            await self._admin.pause(grace=self.config.owner_timeout + 1.0)

    async def listen_again(
        self, listener: socket.socket | None, admin: socket.socket | None
    ) -> None:
        await self.serve(listener, admin)

    def handed_over(self) -> None:
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._stop_handed_over())

    def addresses(self, listener: socket.socket, admin: socket.socket | None) -> None:
        self.state.listen_address = f"{self.config.listen.host}:{listener.getsockname()[1]}"
        if admin is not None:
            scheme = "https" if self.admin_tls else "http"
            host = reachable_host(self.config.admin.host)
            self.state.admin_url = f"{scheme}://{host}:{admin.getsockname()[1]}"

    async def serve(self, listener: socket.socket | None, admin: socket.socket | None) -> None:
        if listener is not None:
            self._server = await self.listener.adopt(listener)
        if admin is not None:
            if self._admin is None:
                assert self._server is not None
                await self._start_admin(self._server, sock=admin)
            else:
                tls = self.admin_tls.context if self.admin_tls else None
                await self._admin.start(
                    self.config.admin.host, self.config.admin.port, tls, sock=admin
                )

    async def _start_admin(
        self, listener: asyncio.Server, *, sock: socket.socket | None = None
    ) -> None:
        control = NodeControl(
            self.state,
            fleet=self.fleet,
            asking=self.endpoint,
            broadcast=self.replies.broadcast,
            upstreams=self.pool,
            upkeep=self.upkeep,
            listening=listener.is_serving,
            request_stop=self.request_stop,
            exposition=self.metrics.exposition,
            metrics=self.metrics,
        )
        app = build_app(
            control,
            token=self.config.admin_token,
            metrics_public=self.config.metrics_public,
        )
        self._admin = AdminServer(app)
        with naming("--admin", self.config.admin):
            _, port = await self._admin.start(  # the bound port, when asked for port 0
                self.config.admin.host,
                self.config.admin.port,
                self.admin_tls.context if self.admin_tls else None,
                sock=sock,
            )
        scheme = "https" if self.admin_tls else "http"
        self.state.admin_url = f"{scheme}://{reachable_host(self.config.admin.host)}:{port}"

    def reload_certificates(self) -> None:
        """SIGHUP: load the listener's and the admin API's certificates again (new handshakes
        use them; open sockets keep theirs; a bad file is logged and the old one kept)."""
        for tls in (self.tls, self.admin_tls):
            if tls is not None:
                tls.reload()

    async def drain(self, grace: float | None = None) -> None:
        """Stop accepting; let sockets finish for ``grace`` seconds; then close them."""
        if self.draining:
            return
        self.state.draining = True
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
        """Place every frame already read, let the links send their queues and the
        upstreams acknowledge what they hold (what waits to be delivered again included)."""
        for session in list(self.sessions.values()):
            session.set_paused(True)
        while time.monotonic() < deadline:
            held = any(s.flow.held for s in self.sessions.values())
            queued = any(link.queue for link in self.pool.links.values() if link.in_rotation)
            if not held and not queued and not self.pool.totals.messages:
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
        if self.offer is not None:
            await _bounded("close the handoff offer", self.offer.close(), 3.0)
            if self.offer.handed:  # stopped while relaying: the node lives on elsewhere
                await self._close_sessions("node upgraded")
                await self._stop_handed_over()
                return
        if self.takeover is not None:
            await _bounded("end the handoff relay", self.takeover.close(), 2.0)
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

    async def _stop_handed_over(self) -> None:
        """Everything moved to the new process: release what is left here, without draining
        or leaving the fleet (the node lives on over there)."""
        await _bounded("close upstream links", self.pool.close(grace=0.5), 3.0)
        await self.tasks.cancel_all(grace=3.0)
        await _bounded("close bus endpoint", self.endpoint.close(keep_inbox=True), 5.0)
        await _bounded("close fleet", self.fleet.close(), 3.0)
        if self._admin is not None:
            await _bounded("close admin API", self._admin.close(), 3.0)
        await stop_handshakes(self.listener)
        self.stopped.set()
        log.info("node %s handed over to its successor; this process exits", self.node_id)

    def __repr__(self) -> str:
        return f"<Node {self.node_id} sockets={len(self.sessions)} {self.pool!r}>"


def admission(config: NodeConfig) -> Admission:
    return Admission(
        max_total=config.max_connections,
        fd_room=socket_room(open_files_limit()),
        max_per_source=config.max_connections_per_ip,
        rate=config.accept_rate,
    )


def session_limits(config: NodeConfig) -> SessionLimits:
    """Every socket's limits, from the node's config (``NODE_FLOW`` for the rest)."""
    return SessionLimits(
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


def upstream_specs(config: NodeConfig) -> Iterable[UpstreamSpec]:
    """The upstreams named by ``--upstream``, with the node's timeouts and TLS."""
    return (
        UpstreamSpec(
            address.host,
            address.port,
            config.ready_timeout,
            config.alive_timeout,
            tls=config.upstream_tls,
        )
        for address in config.upstream
    )


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
