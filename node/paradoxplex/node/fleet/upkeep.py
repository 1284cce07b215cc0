"""Keeping this node's place in the fleet: registration, heartbeat, the copy of its sessions,
upstream reconciliation and health views, resync after an outage, dead-node cleanup.

Rules:
- ``join`` claims the node id for this incarnation (``claim``: refused when a live process
  holds it; an earlier incarnation's sessions are removed, and with lifecycle events their
  upstreams are owed DISCONNECTED), registers the configured upstreams, then opens links to
  every registered upstream (``reconcile``). ``start`` runs the heartbeat every
  ``heartbeat`` s.
- A heartbeat (or a resync) that finds the id held by another incarnation means this one was
  replaced (it was taken for dead): ``FleetStatus.replaced_by`` is set, nothing more is
  written, and ``on_replaced`` stops the node. ``leave`` removes only this incarnation's.
- Each beat refreshes the node's record and liveness (TTL ``node_ttl``); in a shared fleet it
  also queues moved session counters, publishes every link's health view and reaps dead
  nodes (one survivor each; their sockets' upstreams hear DISCONNECTED with lifecycle events).
- Whom a missed socket lookup must hear say no (``peers``): the nodes seen alive within
  ``node_ttl`` of readable fleet, less any found dead (its liveness expired, or a survivor
  said ``node_gone`` on the bus before removing it).
- Fleet unreachable: ``FleetStatus.ok`` goes False (one WARNING), sessions stay queued; when the
  fleet answers again (or the bus reconnects), ``resync`` re-registers the node first, then
  its upstreams and sessions (Redis may have come back empty) and forgets cached owners.
- Sessions are written only while ``FleetStatus.registered()``: the node's record is in the
  fleet and the bus listens (a session written before its node's liveness key would make the
  node look dead).
- ``FleetStatus`` and ``HealthViews`` are made before the parts that read them (the first-byte
  hold, the upstream pool), ``FleetUpkeep`` after the pool: nothing is wired afterwards.
- A hot handoff: ``pause`` writes what the session copy holds (bounded) and stops the
  heartbeat and the copy: from then on the successor writes this node's records; ``start``
  runs them again (the handoff did not happen). ``take_over`` is the successor's ``join``
  (the node and its upstreams); ``adopted`` then refreshes the records of the sockets it
  took over and removes those of sockets that closed on the way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from paradoxplex.node.fleet.claim import claim_node_id
from paradoxplex.node.fleet.reaper import reap_dead_nodes
from paradoxplex.node.fleet.session_sync import SessionSync
from paradoxplex.node.links.link import UpstreamLink
from paradoxplex.node.links.pool import UpstreamPool
from paradoxplex.node.metrics import Metrics
from paradoxplex.node.state import NodeState
from paradoxplex.node.tasks import TaskSet, checkpoint
from paradoxplex.shared import envelopes
from paradoxplex.shared.errors import FleetUnavailable
from paradoxplex.shared.fleet import FleetBus, FleetState, NodeRecord
from paradoxplex.shared.peers import Peers
from paradoxplex.shared.sessions import SessionInfo
from paradoxplex.shared.upstreams import UpstreamMode, UpstreamSpec
from paradoxplex.wire import bus_pb2
from paradoxplex.wire import upstream_pb2 as pb

log = logging.getLogger("paradoxplex.node.fleet")


class FleetStatus:
    """Whether this node is in the fleet now: ``ok`` while the fleet state answers
    (``paradoxplex_fleet_degraded`` is 1 otherwise), ``registered()`` while session writes may
    go (ok, and the bus listens)."""

    def __init__(self, bus: FleetBus, metrics: Metrics) -> None:
        self._bus = bus
        self._metrics = metrics
        self._ok = True
        self.replaced_by: str | None = None  # the incarnation that took this node's id

    @property
    def ok(self) -> bool:
        return self._ok

    @ok.setter
    def ok(self, ok: bool) -> None:
        self._ok = ok
        self._metrics.fleet_degraded.set(0 if ok else 1)

    def registered(self) -> bool:
        """Whether session writes may go to the fleet: this node is registered there."""
        return self._ok and self._bus.connected and self.replaced_by is None

    def __repr__(self) -> str:
        replaced = f" replaced_by={self.replaced_by}" if self.replaced_by else ""
        return f"<FleetStatus ok={self._ok} registered={self.registered()}{replaced}>"


class HealthViews:
    """This node's view of each upstream, published to a shared fleet when a link changes."""

    def __init__(self, fleet: FleetState, *, node_id: str, tasks: TaskSet) -> None:
        self.fleet = fleet
        self.node_id = node_id
        self.tasks = tasks

    def link_changed(self, link: UpstreamLink) -> None:
        if self.fleet.shared:
            self.tasks.spawn(self._publish(link), f"health {link.id}")

    async def _publish(self, link: UpstreamLink) -> None:
        with contextlib.suppress(FleetUnavailable):
            await self.write(link)

    async def write(self, link: UpstreamLink) -> None:
        """Now; raises ``FleetUnavailable``."""
        await self.fleet.set_health(self.node_id, link.id, link.view())


class FleetUpkeep:
    def __init__(
        self,
        state: NodeState,
        *,
        fleet: FleetState,
        bus: FleetBus,
        status: FleetStatus,
        health: HealthViews,
        pool: UpstreamPool,
        forget_owners: Callable[[], None],
        metrics: Metrics,
        tasks: TaskSet,
        heartbeat: float,
        node_ttl: float,
        lifecycle_events: bool,
        on_registered: Callable[[Iterable[SessionInfo]], None],
        on_fleet_lost: Callable[[], None],
        on_replaced: Callable[[], None],
    ) -> None:
        self.state = state
        self.node_id = state.node_id
        self.sessions = state.sessions
        self.fleet = fleet
        self.bus = bus
        self.status = status
        self.health = health
        self.pool = pool
        self.forget_owners = forget_owners
        self.metrics = metrics
        self.tasks = tasks
        self.heartbeat = heartbeat
        self.node_ttl = node_ttl
        self.lifecycle_events = lifecycle_events
        self._peers = Peers(ttl=node_ttl)
        self._running: list[asyncio.Task[None]] = []
        self._beating = False  # heartbeats began (the bus listens): the record says so
        self.on_fleet_lost = on_fleet_lost
        self.on_replaced = on_replaced
        self.sync = SessionSync(
            fleet,
            self._local_infos,
            on_error=self._fleet_failed,
            ready=status.registered,
            on_registered=on_registered,
            on_not_ready=on_fleet_lost,
        )

    def record(self) -> NodeRecord:
        """This node as the fleet lists it, now."""
        state, traffic = self.state, self.metrics.traffic
        return NodeRecord(
            node_id=state.node_id,
            incarnation=state.incarnation,
            listen=state.listen_address,
            admin_url=state.admin_url,
            started_at=state.started_at,
            sockets=len(state.sessions),
            extra={"draining": state.draining},
            state=self._standing(),
            messages_in=traffic.messages_in,
            messages_out=traffic.messages_out,
            drops=self.metrics.dropped(),
            heartbeat_at=time.time(),
            last_handoff=state.last_handoff,
            predecessor=state.predecessor,
        )

    def _standing(self) -> str:
        if not self._beating:  # claimed, but its bus does not listen yet: nobody to ask
            return "starting"
        if self.state.draining:
            return "draining"
        return "up" if self.status.registered() else "degraded"

    # joining and leaving ----------------------------------------------------------------

    async def join(self, upstreams: Iterable[UpstreamSpec]) -> None:
        """Claim the id (``ConfigError`` when a live process holds it), then the upstreams."""
        removed = await claim_node_id(self.fleet, self.record(), ttl=self.node_ttl)
        self._tell_lost(self.node_id, removed, "node restarted")
        for spec in upstreams:
            await self.fleet.put_upstream(spec)
        await self.reconcile()

    def start(self) -> None:
        self._beating = True
        self._running = [
            self.tasks.spawn(self.sync.run(), "session sync"),
            self.tasks.spawn(self._beat_forever(), "heartbeat"),
        ]

    async def pause(self, *, flush: float) -> None:
        """Write what the session copy holds (at most ``flush`` seconds), then stop the
        heartbeat and the copy. Raises ``FleetUnavailable`` or ``TimeoutError`` when what is
        queued could not be written."""
        running, self._running = self._running, []
        for task in running:
            task.cancel()
        if running:
            await asyncio.wait(running)
        async with asyncio.timeout(flush):
            await self.sync.flush()

    async def take_over(self, upstreams: Iterable[UpstreamSpec], *, replacing: str) -> None:
        """The successor's ``join`` (a hot handoff, same node id): claim the id in place of
        incarnation ``replacing`` (the old process), naming it as this one's predecessor so
        that the records it wrote still count, and register ``upstreams`` (in memory they
        exist only in the old process); ``adopted`` then writes the sockets' records as this
        incarnation's. If a third incarnation holds the id, this process is replaced."""
        self.state.predecessor = replacing
        holder = await self.fleet.register_node(
            self.record(), ttl=self.node_ttl, replacing=replacing or None
        )
        if holder is not None:
            self._replaced(holder)
            return
        known = {spec.id for spec in await self.fleet.list_upstreams()}
        for spec in upstreams:
            if spec.id not in known:
                await self.fleet.put_upstream(spec)

    async def adopted(self) -> int:
        """After a takeover, serving: write every socket held here again as this
        incarnation's (through the session copy, which orders it with the closes), remove the
        records of this node id's sockets that are not held here (they closed on the way),
        then drop the predecessor from the claim; how many were removed. Raises
        ``FleetUnavailable`` when the fleet fails meanwhile (the predecessor stays named: its
        records count until a later ``adopted``)."""
        self.sync.resync()
        await self.sync.flush()
        held = self.sessions
        stale = [s for s in await self.fleet.node_sessions(self.node_id) if s not in held]
        if stale:
            await self.fleet.unregister_sessions([(s, self.node_id) for s in stale])
        self.state.predecessor = ""
        await self._write_record(self.fleet.heartbeat)
        return len(stale)

    async def reclaim(self, successor: str) -> None:
        """A handoff failed after the successor may have claimed the id: take it back (the
        successor is gone, or will stop on finding the id held)."""
        holder = await self.fleet.register_node(
            self.record(), ttl=self.node_ttl, replacing=successor
        )
        if holder is not None:
            self._replaced(holder)

    async def announce_draining(self) -> None:
        with contextlib.suppress(FleetUnavailable):
            await self._write_record(self.fleet.heartbeat)

    async def leave(self) -> None:
        """Remove this incarnation's record and sessions (a successor's stay)."""
        await self.fleet.unregister_node(self.node_id, incarnation=self.state.incarnation)

    async def write_session(self, info: SessionInfo) -> None:
        """Write one socket's record now (an admin change is visible once answered); queued
        as well, so a failed write is retried with the others."""
        self.sync.changed(info)
        if self.status.registered() and info.client_uuid not in self.sync.unwritten:
            with contextlib.suppress(FleetUnavailable):
                await self.fleet.update_sessions([info])

    # upstreams --------------------------------------------------------------------------

    async def reconcile(self) -> None:
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
            elif spec.mode is UpstreamMode.DRAINING:
                link.drain()
        for upstream_id in list(self.pool.links):
            if upstream_id not in specs:
                self.tasks.spawn(self.pool.remove(upstream_id), f"remove {upstream_id}")

    # the heartbeat ----------------------------------------------------------------------

    async def _beat_forever(self) -> None:
        while True:
            try:
                await self.beat()
            except FleetUnavailable as error:
                if self.status.ok:
                    log.warning("fleet unavailable, serving local sockets only: %s", error.reason)
                self._peers.blind()
                self._fleet_failed()
            checkpoint()
            await asyncio.sleep(self.heartbeat)

    async def beat(self) -> None:
        if not self.status.ok and await self.fleet.ping():
            await self.resync()
        await self._write_record(self.fleet.heartbeat)
        if not self.fleet.shared or self.status.replaced_by is not None:
            return
        self._queue_counters()
        for link in list(self.pool.links.values()):
            await self.health.write(link)
        census = await reap_dead_nodes(
            self.fleet, node_id=self.node_id, ttl=self.node_ttl, announce=self._announce_gone
        )
        self._peers.seen(census.alive, time.monotonic())
        for dead in census.dead:  # its liveness expired: it answers no more
            self._peers.forget(dead)
        for dead, client_uuids in census.cleaned:
            self._tell_lost(dead, client_uuids, "node lost")
        self.status.ok = True

    async def _write_record(self, write: Callable[..., Awaitable[str | None]]) -> None:
        """Write this node's record (``heartbeat`` or ``register_node``); learn whether
        another incarnation took the id."""
        if self.status.replaced_by is not None:
            return
        holder = await write(self.record(), ttl=self.node_ttl)
        if holder is not None:
            self._replaced(holder)

    def _replaced(self, holder: str) -> None:
        self.status.replaced_by = holder
        log.error(
            "node id %s was taken over by incarnation %s (this one, %s, was taken for dead): "
            "stopping",
            self.node_id,
            holder,
            self.state.incarnation,
        )
        self.on_replaced()

    async def _announce_gone(self, node_id: str) -> None:
        with contextlib.suppress(FleetUnavailable):  # the others forget it within node_ttl
            await self.bus.control(envelopes.control(self.node_id, "node_gone", node_id=node_id))

    async def control(self, message: bus_pb2.Control) -> None:
        """A fleet control message: a node gone (forget it), or the registry changed."""
        if message.action == "node_gone":
            self._peers.forget(message.node_id)
        else:
            await self.reconcile()

    def peers(self) -> set[str]:
        """The other nodes seen alive within ``node_ttl`` of readable fleet (``Peers``: kept
        through a Redis outage, and after it came back empty while the nodes register
        again)."""
        return self._peers.current(time.monotonic())

    def _tell_lost(self, node_id: str, client_uuids: list[str], reason: str) -> None:
        """With lifecycle events: DISCONNECTED for sockets ``node_id`` held and that are gone
        without closing here (it died, or it was this node's previous incarnation)."""
        if not self.lifecycle_events or not client_uuids:
            return
        event = pb.SocketEvent(kind=pb.SocketEvent.DISCONNECTED, node_id=node_id, reason=reason)
        self.pool.owe_events((client_uuid, event) for client_uuid in client_uuids)

    def _queue_counters(self) -> None:
        """Queue the sessions whose counters moved since the last heartbeat."""
        for session in self.sessions.values():
            info = session.info
            if info is not None and session.synced_io != info.bytes_in + info.bytes_out:
                session.synced_io = info.bytes_in + info.bytes_out
                self.sync.changed(info)

    def _fleet_failed(self) -> None:
        self.metrics.fleet_errors.inc()
        self.status.ok = False
        self.on_fleet_lost()

    async def resync(self) -> None:
        """The fleet came back (maybe empty): register this node, its upstreams and sessions."""
        self.status.ok = False  # no session writes before the node's own record is back
        await self._write_record(self.fleet.register_node)
        if self.status.replaced_by is not None:
            return
        known = {spec.id for spec in await self.fleet.list_upstreams()}
        for link in self.pool.links.values():
            if link.id not in known:
                await self.fleet.put_upstream(link.spec)
        self.sync.resync()
        self.forget_owners()
        self.status.ok = True
        log.info("fleet reachable again: node, %d sockets re-registered", len(self.sessions))

    def _local_infos(self) -> list[SessionInfo]:
        return [s.info for s in self.sessions.values() if s.info is not None]

    def __repr__(self) -> str:
        return f"<FleetUpkeep {self.node_id} {self.status!r} {self.sync!r}>"
