"""Hosting a node's sessions: admitting sockets, registering and closing them, the node-wide
reply budget, and holding a new socket's data until the fleet knows it.

Rules:
- A new socket is admitted or refused by ``Admission`` (draining, ``max_connections``, per
  source, accept rate), for the real client: a PROXY header's source when there is one.
  Refusals are counted by reason and logged at most once per interval and source.
- Known from the first byte: in a shared fleet whose state can be written, nothing a socket
  sends (nor its CONNECTED event) reaches an upstream before the fleet state holds it
  (``registered``); when the fleet cannot be written, every waiting socket is let go at once.
- Replies buffered for all sockets stay under ``max_buffered``: past it, the sockets with the
  most buffered are closed (``make_room``).
- Closing counts what a socket still held (``socket_closed``) and tells the fleet.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable

from paradoxplex.node.fleet.session_sync import SessionSync
from paradoxplex.node.links.pool import UpstreamPool
from paradoxplex.node.metrics import Metrics
from paradoxplex.node.sockets.session import Session
from paradoxplex.shared.admission import Admission, Refusal, source_of
from paradoxplex.shared.buffers import ReplyBuffers
from paradoxplex.shared.drops import DropReason
from paradoxplex.shared.sessions import SessionInfo, new_client_uuid
from paradoxplex.wire import upstream_pb2 as pb

log = logging.getLogger("paradoxplex.node.sockets")


class SessionHosting:
    """The ``SessionHost`` of every socket of one node."""

    def __init__(
        self,
        *,
        node_id: str,
        metrics: Metrics,
        admission: Admission,
        max_buffered: int,
        lifecycle_events: bool,
        shared: bool,
    ) -> None:
        self.node_id = node_id
        self.metrics = metrics
        self.admission = admission
        self.lifecycle_events = lifecycle_events
        self.shared = shared
        self.sessions: dict[str, Session] = {}
        self.buffers: ReplyBuffers[Session] = ReplyBuffers(limit=max_buffered)
        self.metrics.buffered.set_function(self._buffered)
        # sockets whose data waits until the fleet knows them (known from the first byte)
        self.unregistered: set[str] = set()
        self.draining = False
        self._pool: UpstreamPool | None = None
        self._sync: SessionSync | None = None
        self._registered_in_fleet: Callable[[], bool] = lambda: False

    def serve(
        self, pool: UpstreamPool, sync: SessionSync, *, registered: Callable[[], bool]
    ) -> None:
        """Wire the parts sessions go to (they are built after the sessions' dict)."""
        self._pool = pool
        self._sync = sync
        self._registered_in_fleet = registered

    @property
    def pool(self) -> UpstreamPool:
        assert self._pool is not None, "serve() wires the pool first"
        return self._pool

    @property
    def sync(self) -> SessionSync:
        assert self._sync is not None, "serve() wires the session copy first"
        return self._sync

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
            self.metrics.sockets_refused.labels(refusal).inc()
            count = self.admission.refused(source, now)
            if count:
                log.warning(REFUSED[refusal], count, source, held)
            return None
        session.source = sys.intern(source)  # one string per source, not one per socket
        remote = session.peer or (f"{peer[0]}:{peer[1]}" if peer else "unknown")
        info = SessionInfo(new_client_uuid(), self.node_id, remote, time.time())
        self.sessions[info.uuid] = session
        self.metrics.sockets_opened.inc()
        self.metrics.sockets.set(len(self.sessions))
        # no TCP_NODELAY here: both loops set it on every TCP transport, and asking for the
        # transport's socket object would keep one more object per socket
        self.sync.added(info)
        if self.shared and self._registered_in_fleet():
            self.unregistered.add(info.uuid)  # nothing reaches an upstream before the fleet
        elif self.lifecycle_events:  # knows the socket (see _registered)
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
            self.metrics.drops.labels(DropReason.SOCKET_CLOSED).inc(dropped)
        self.metrics.sockets.set(len(self.sessions))
        self.metrics.sockets_closed.labels(_reason_label(reason)).inc()
        self.sync.removed(info)
        if self.lifecycle_events:
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

    def registered(self, infos: Iterable[SessionInfo]) -> None:
        """The fleet knows these sockets now: let their data (and CONNECTED event) go."""
        unregistered = self.unregistered
        if not unregistered:
            return
        for info in infos:
            if info.uuid in unregistered:
                self._let_go(info.uuid)

    def release_unregistered(self) -> None:
        """The fleet cannot be written: serve every waiting socket locally anyway (an admin
        miss then asks the other nodes instead of the fleet state)."""
        for client_uuid in list(self.unregistered):
            self._let_go(client_uuid)

    def _let_go(self, client_uuid: str) -> None:
        self.unregistered.discard(client_uuid)
        session = self.sessions.get(client_uuid)
        if session is None or session.info is None:
            return
        if self.lifecycle_events:
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

    def __repr__(self) -> str:
        return (
            f"<SessionHosting sockets={len(self.sessions)} "
            f"unregistered={len(self.unregistered)} buffered={self.buffers.total}>"
        )


REFUSED = {
    Refusal.DRAINING: "refused %d socket(s) from %s: draining (%d sockets held)",
    Refusal.MAX_CONNECTIONS: "refused %d socket(s) from %s: %d sockets held (max_connections)",
    Refusal.PER_IP: "refused %d socket(s) from %s: max_connections_per_ip (%d sockets held)",
    Refusal.ACCEPT_RATE: "refused %d socket(s) from %s: accept_rate (%d sockets held)",
    Refusal.FD_LIMIT: "refused %d socket(s) from %s: %d sockets held, all that the open-file "
    "limit leaves room for (fd_limit)",
}


def _reason_label(reason: str) -> str:
    """A bounded set of metric label values from free-text close reasons."""
    head = reason.split(":", 1)[0]
    return head if len(head) <= 40 else "other"
