"""The sessions waiting in line for a link, in arrival order.

Rules:
- A session joins (``join``) when the pool could not place all it holds (no link with room,
  or its redeliveries or a draining link come first); it is in line at most once.
- ``retry`` gives each session in line another go, in arrival order, until one has to wait
  again (links are full again: those behind it keep their places). A session that closed,
  or has nothing left to place, leaves the line without a go.
- A closed session leaves (``leave``); the line is compacted when more than half of it (plus
  64) are sessions that left, so closed sessions do not pile up in it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Container

from paradoxplex.node.sockets.session import Session


class WaitingLine:
    """Sessions waiting for a link, each once, in arrival order (see the module's rules)."""

    __slots__ = ("_ids", "_sessions")

    def __init__(self) -> None:
        self._sessions: deque[Session] = deque()
        self._ids: set[str] = set()

    def __len__(self) -> int:
        return len(self._sessions)

    def __bool__(self) -> bool:
        return bool(self._sessions)

    def join(self, session: Session) -> None:
        if session.client_uuid not in self._ids:
            self._ids.add(session.client_uuid)
            self._sessions.append(session)

    def leave(self, client_uuid: str) -> None:
        self._ids.discard(client_uuid)
        if len(self._sessions) > 2 * len(self._ids) + 64:  # drop closed sessions
            self._sessions = deque(s for s in self._sessions if s.client_uuid in self._ids)

    def retry(self, submit: Callable[[Session], None], redeliveries: Container[str]) -> None:
        """Give sessions in line another go through ``submit``, in order, until one waits
        again; ``redeliveries``: the sockets with messages waiting to be delivered again."""
        for _ in range(len(self._sessions)):
            session = self._sessions.popleft()
            self._ids.discard(session.client_uuid)
            if session.closing or not (session.flow.held or session.client_uuid in redeliveries):
                continue
            submit(session)
            if session.client_uuid in self._ids:
                break

    def __repr__(self) -> str:
        return f"<WaitingLine sessions={len(self._ids)}>"
