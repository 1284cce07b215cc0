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
  one per socket, made by the ``listener.Listener``); ``listening.ListeningEnds``: the
  listener's and the admin API's servers; ``drain.SocketDrain``: the sockets let finish,
  then closed;
- ``endpoint.BusEndpoint``: this node's end of the fleet bus (what comes in, admin
  request/reply); ``commands.SocketCommands`` answers admin commands for local sockets;
- the admin API (``paradoxplex.admin.app``) through ``admin_bridge.NodeControl``;
- ``succession.Succession``: the hot handoffs, both sides.

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
everything went, stops through ``handed_over`` (no drain, no unregistering). The listening
ends are both sides' ``Serving``: the listening sockets, as they move.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from paradoxplex.admin.app import build_app
from paradoxplex.node.admin_bridge import NodeControl
from paradoxplex.node.delivery.commands import SocketCommands
from paradoxplex.node.delivery.endpoint import BusEndpoint, BusOutbox
from paradoxplex.node.delivery.replies import Owners, ReplyRouter
from paradoxplex.node.fleet.upkeep import FleetStatus, FleetUpkeep, HealthViews
from paradoxplex.node.handoff.new import Handshake
from paradoxplex.node.handoff.parts import HandoffParts
from paradoxplex.node.handoff.succession import Succession
from paradoxplex.node.handoff.terms import terms_of
from paradoxplex.node.links.settings import upstream_pool, upstream_specs
from paradoxplex.node.metrics import Metrics, build_version
from paradoxplex.node.sockets.drain import SocketDrain
from paradoxplex.node.sockets.hold import FirstByteHold
from paradoxplex.node.sockets.hosting import SessionHosting
from paradoxplex.node.sockets.listener import Listener, stop_handshakes
from paradoxplex.node.sockets.listening import ListeningEnds
from paradoxplex.node.sockets.open_files import open_files_limit
from paradoxplex.node.sockets.session import NODE_FLOW, Session, SessionLimits
from paradoxplex.node.state import NodeState
from paradoxplex.node.tasks import TaskSet
from paradoxplex.node.tls import ServerTls, admin_files, listener_files
from paradoxplex.shared.admission import Admission, socket_room
from paradoxplex.shared.config import NodeConfig
from paradoxplex.shared.errors import FleetUnavailable
from paradoxplex.shared.fleet import Backend, FleetBus, FleetState

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
        self.pool = upstream_pool(
            config,
            metrics=metrics,
            sessions=state.sessions,
            receive_reply=self.replies.receive_reply,
            on_change=health.link_changed,
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
            bus=self.bus,
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
        self.ends = ListeningEnds(
            self.listener,
            state=state,
            listen=config.listen,
            admin=config.admin,
            tls=self.tls,
            admin_tls=self.admin_tls,
            admin_app=self._admin_app,
            admin_grace=config.owner_timeout + 1.0,
        )
        self.socket_drain = SocketDrain(
            state,
            pool=self.pool,
            stop_accepting=self.ends.stop_accepting,
            announce=self.upkeep.announce_draining,
            grace=config.drain_grace,
        )
        self.commands = SocketCommands(
            state.sessions, write=self.upkeep.write_session, metrics=metrics
        )
        self.endpoint = BusEndpoint(
            self.bus,
            outbox=self.outbox,
            deliveries=self.replies,
            commands=self.commands,
            on_control=self.upkeep.control,
            on_reconnect=self.upkeep.resync,
            node_id=self.node_id,
            metrics=metrics,
            tasks=tasks,
            owner_timeout=config.owner_timeout,
            holds_id=lambda: self.status.replaced_by is None,
        )
        parts = HandoffParts(
            state=state,
            hosting=self.hosting,
            pool=self.pool,
            endpoint=self.endpoint,
            commands=self.commands,
            upkeep=self.upkeep,
            serving=self.ends,
            metrics=metrics,
        )
        self.succession = Succession(
            parts,
            path=config.handoff_socket,
            terms=terms_of(config),
            version=build_version(),
            status=self.status,
            handed_over=self.handed_over,
            new_session=lambda: Session(self.hosting, self.limits),
            router=self.replies,
            tasks=tasks,
            upstreams=upstream_specs(config),
            drain_grace=config.drain_grace,
            max_frame=config.max_frame,
        )
        self.stopped = asyncio.Event()
        self._stopping: asyncio.Future[None] | None = None

    @property
    def listening(self) -> bool:
        return self.ends.listening

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
        await self.ends.start(reuse_port=config.workers > 1)
        await self.upkeep.join(upstream_specs(config))
        await self.endpoint.start()
        self.upkeep.start()
        await self._place_owed_events(config.ready_timeout)
        await self.succession.start_offer()

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
        await _bounded("close admin API", self.ends.close_admin(), 3.0)
        await _bounded("close listener", self.ends.close_listener(), 2.0)
        await _bounded("close upstream links", self.pool.close(grace=0.0), 3.0)
        await self.tasks.cancel_all(grace=1.0)
        await _bounded("close bus endpoint", self.endpoint.close(), 3.0)
        await _bounded("close fleet", self.fleet.close(), 3.0)

    async def take_over(self, handshake: Handshake) -> None:
        """Become the node the process behind ``handshake`` is (instead of ``start``); raises
        ``HandoffError`` when it did not happen (that process serves on). The node lives on
        as a new incarnation, which claims the id in place of the old process's at commit."""
        await self.fleet.start()
        await self.succession.take_over(handshake)

    def handed_over(self) -> None:
        """Everything went to the new process: stop without leaving the fleet."""
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._stop_handed_over())

    def _admin_app(self, listening: Callable[[], bool]) -> web.Application:
        """The admin API, acting on this node through ``NodeControl``."""
        control = NodeControl(
            self.state,
            fleet=self.fleet,
            asking=self.endpoint,
            broadcast=self.replies.broadcast,
            upstreams=self.pool,
            upkeep=self.upkeep,
            listening=listening,
            request_stop=self.request_stop,
            exposition=self.metrics.exposition,
            metrics=self.metrics,
        )
        return build_app(
            control,
            token=self.config.admin_token,
            metrics_public=self.config.metrics_public,
        )

    def reload_certificates(self) -> None:
        """SIGHUP: load the listener's and the admin API's certificates again (new handshakes
        use them; open sockets keep theirs; a bad file is logged and the old one kept)."""
        self.ends.reload_certificates()

    async def drain(self, grace: float | None = None) -> None:
        """Stop accepting; let sockets finish for ``grace`` seconds; then close them."""
        await self.socket_drain.run(grace)

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
        await _bounded("close the handoff offer", self.succession.close_offer(), 3.0)
        if self.succession.handed:  # stopped while relaying: the node lives on elsewhere
            await self.socket_drain.close_sessions("node upgraded")
            await self._stop_handed_over()
            return
        await _bounded("end the handoff relay", self.succession.end_relay(), 2.0)
        await self.drain()
        await _bounded("close upstream links", self.pool.close(grace=2.0), 5.0)
        await _bounded("write sessions", self.sync.flush(), 3.0)
        await _bounded("unregister", self.upkeep.leave(), 3.0)
        await self.tasks.cancel_all(grace=3.0)
        await _bounded("close bus endpoint", self.endpoint.close(), 5.0)
        await _bounded("close fleet", self.fleet.close(), 3.0)
        await _bounded("close admin API", self.ends.close_admin(), 3.0)
        await _bounded("close listener", self.ends.close_listener(), 2.0)
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
        await _bounded("close admin API", self.ends.close_admin(), 3.0)
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
