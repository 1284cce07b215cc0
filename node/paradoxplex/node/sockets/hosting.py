"""Hosting a node's sessions: admitting sockets, registering and closing them, the node-wide
reply budget.

Rules:
- A new socket is admitted or refused by ``Admission`` (draining, ``max_connections``, per
  source, accept rate), for the real client: a PROXY header's source when there is one.
  Refusals are counted by reason and logged at most once per interval and source.
- Known from the first byte: a new socket's data waits in the ``FirstByteHold`` until the
  fleet state holds it (``hold``).
- Replies buffered for all sockets stay under ``max_buffered``: past it, the sockets with the
  most buffered are closed (``make_room``).
- Closing counts what a socket still held (``socket_closed``) and tells the fleet.
- A hot handoff: a socket another process admitted is adopted (``adopt_session``: counted
  for its source whatever the limits, no CONNECTED event, the fleet learns it at the commit);
  one handed over to another process is let go (``let_go``) without a trace: it did not
  close.
- Built last of the parts a socket reaches (the pool, the hold, the session copy are given):
  whole from the start; the sockets it holds are ``NodeState.sessions``.
"""

from __future__ import annotations

import logging
import sys
import time

from paradoxplex.node.fleet.session_sync import SessionSync
from paradoxplex.node.links.pool import UpstreamPool
from paradoxplex.node.metrics import Metrics
from paradoxplex.node.sockets.hold import FirstByteHold, lifecycle_event
from paradoxplex.node.sockets.session import Session
from paradoxplex.node.state import NodeState
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
        state: NodeState,
        *,
        pool: UpstreamPool,
        hold: FirstByteHold,
        sync: SessionSync,
        metrics: Metrics,
        admission: Admission,
        max_buffered: int,
        lifecycle_events: bool,
    ) -> None:
        self.state = state
        self.node_id = state.node_id
        self.sessions = state.sessions
        self.pool = pool
        self.hold = hold
        self.sync = sync
        self.metrics = metrics
        self.admission = admission
        self.lifecycle_events = lifecycle_events
        self.buffers: ReplyBuffers[Session] = ReplyBuffers(limit=max_buffered)
        self.metrics.buffered.set_function(self._buffered)
        self.quiet = False  # handed over: closes here tell neither the fleet nor upstreams

    def open_session(self, session: Session) -> SessionInfo | None:
        transport = session.transport
        peer = transport.get_extra_info("peername") if transport else None
        peer = peer if isinstance(peer, tuple) else None
        # the real client: a PROXY header's source, else the connection's peer
        host = session.peer.rpartition(":")[0] if session.peer else (str(peer[0]) if peer else "")
        source = source_of(host) if host else "unknown"
        now = time.monotonic()
        held = len(self.sessions)
        refusal = self.admission.admit(source, now, held=held, draining=self.state.draining)
        if refusal is not None:
            self.metrics.sockets_refused.labels(refusal).inc()
            count = self.admission.refused(source, now)
            if count:
                log.warning(REFUSED[refusal], count, source, held)
            return None
        session.source = sys.intern(source)  # one string per source, not one per socket
        remote = session.peer or (f"{peer[0]}:{peer[1]}" if peer else "unknown")
        info = SessionInfo(
            new_client_uuid(),
            self.node_id,
            remote,
            time.time(),
            incarnation=self.state.incarnation,
        )
        self.sessions[info.client_uuid] = session
        self.metrics.sockets_opened.inc()
        self.metrics.sockets.set(len(self.sessions))
        # no TCP_NODELAY here: both loops set it on every TCP transport, and asking for the
        # transport's socket object would keep one more object per socket
        self.sync.added(info)
        if not self.hold.opened(info) and self.lifecycle_events:  # held: CONNECTED goes later
            lifecycle_event(self.pool, info, pb.SocketEvent.CONNECTED, "")
        log.debug("socket %s open from %s", info.client_uuid, remote)
        return info

    def adopt_session(self, session: Session) -> None:
        info = session.info
        if info is None:
            return
        remote = session.peer or info.remote
        host = remote.rpartition(":")[0]
        source = source_of(host) if host else "unknown"
        self.admission.adopt(source)
        session.source = sys.intern(source)
        self.sessions[info.client_uuid] = session
        self.metrics.sockets.set(len(self.sessions))

    def handed_over(self) -> None:
        """The node lives on in another process, which writes the fleet's records and tells
        upstreams: a socket that closes here (one this process kept) tells neither."""
        self.quiet = True

    def let_go(self, session: Session) -> None:
        """``session`` is another process's now: forget it, count nothing as closed."""
        if self._forget(session) is not None:
            self.metrics.sockets.set(len(self.sessions))

    def _forget(self, session: Session) -> SessionInfo | None:
        """Take ``session`` out of every part that knows it; its record, or None when it was
        not held here (any more)."""
        info = session.info
        if info is None or self.sessions.pop(info.client_uuid, None) is None:
            return None
        self.admission.release(session.source)
        self.buffers.forget(session)
        self.pool.forget(info.client_uuid)
        self.hold.forget(info.client_uuid)
        return info

    def close_session(self, session: Session, reason: str) -> None:
        info = self._forget(session)
        if info is None:
            return
        dropped = session.flow.drop_all()
        if dropped:
            self.metrics.drops.labels(DropReason.SOCKET_CLOSED).inc(dropped)
        self.metrics.sockets.set(len(self.sessions))
        self.metrics.sockets_closed.labels(_reason_label(reason)).inc()
        if not self.quiet:
            self.sync.removed(info)
            if self.lifecycle_events:
                lifecycle_event(self.pool, info, pb.SocketEvent.DISCONNECTED, reason)
        log.debug(
            "socket %s closed: %s; %d bytes in, %d out, %.1fs",
            info.client_uuid,
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
        if session.client_uuid in self.hold.held:
            session.placed(0)  # held (reading paused) until the fleet knows the socket
            return
        self.pool.submit(session)

    def upstream_ready(self) -> bool:
        return self.pool.ready()

    def __repr__(self) -> str:
        return (
            f"<SessionHosting sockets={len(self.sessions)} "
            f"held={len(self.hold.held)} buffered={self.buffers.total}>"
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
