"""Known from the first byte: a new socket's data waits until the fleet state holds it.

Rules:
- In a shared fleet whose state can be written (``registered()``), a socket that opens is
  held: nothing it sends (nor its CONNECTED event) reaches an upstream before the fleet state
  holds it (``registered(infos)``). When the fleet cannot be written, every held socket is let
  go at once (``release_all``): it is served locally, and an admin miss asks the other nodes
  instead of the fleet state.
- Letting a socket go sends its CONNECTED event (with lifecycle events) and places what it
  read meanwhile; a socket closed meanwhile is forgotten (``forget``).
- Built after the pool it places data on, before the session copy that reports what the fleet
  holds: nothing here waits to be wired.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from paradoxplex.node.links.pool import UpstreamPool
from paradoxplex.node.sockets.session import Session
from paradoxplex.shared.sessions import SessionInfo
from paradoxplex.wire import upstream_pb2 as pb


def lifecycle_event(
    pool: UpstreamPool, info: SessionInfo, kind: pb.SocketEvent.Kind.ValueType, reason: str
) -> None:
    """Tell an upstream that ``info``'s socket connected or disconnected."""
    event = pb.SocketEvent(
        kind=kind, remote_address=info.remote, node_id=info.node_id, reason=reason
    )
    info.seq += 1  # numbered among the socket's messages
    pool.send_event(info.client_uuid, event, info.seq)


class FirstByteHold:
    """The sockets of one node whose data waits until the fleet state knows them."""

    def __init__(
        self,
        *,
        sessions: Mapping[str, Session],
        pool: UpstreamPool,
        shared: bool,
        registered: Callable[[], bool],
        lifecycle_events: bool,
    ) -> None:
        self.sessions = sessions
        self.pool = pool
        self.shared = shared
        self.lifecycle_events = lifecycle_events
        self._registered = registered
        self.held: set[str] = set()

    def opened(self, info: SessionInfo) -> bool:
        """A socket opened: True when it is held (the fleet can be written and does not know
        it yet); False when it goes at once."""
        if self.shared and self._registered():
            self.held.add(info.client_uuid)
            return True
        return False

    def forget(self, client_uuid: str) -> None:
        self.held.discard(client_uuid)

    def registered(self, infos: Iterable[SessionInfo]) -> None:
        """The fleet knows these sockets now: let their data (and CONNECTED event) go."""
        held = self.held
        if not held:
            return
        for info in infos:
            if info.client_uuid in held:
                self._let_go(info.client_uuid)

    def release_all(self) -> None:
        """The fleet cannot be written: serve every held socket locally anyway."""
        for client_uuid in list(self.held):
            self._let_go(client_uuid)

    def _let_go(self, client_uuid: str) -> None:
        self.held.discard(client_uuid)
        session = self.sessions.get(client_uuid)
        if session is None or session.info is None:
            return
        if self.lifecycle_events:
            lifecycle_event(self.pool, session.info, pb.SocketEvent.CONNECTED, "")
        if session.flow.held:
            self.pool.submit(session)

    def __repr__(self) -> str:
        return f"<FirstByteHold held={len(self.held)}>"
