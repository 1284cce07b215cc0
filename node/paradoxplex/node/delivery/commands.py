"""Admin commands on the sockets this node holds: the owner's side of the admin API.

Rules:
- A command names a socket by ``client_uuid`` and an action (``get``, ``send``, ``pause``,
  ``resume``, ``labels``, ``close``); the answer is ``(status, body)``: ``ok`` with the
  socket's record as orjson, ``not_found`` when this node does not hold it, ``error`` with a
  reason otherwise.
- A change (pause, resume, labels) is written to the fleet state before ``apply`` returns
  (that one socket's record, one round trip): an admin action is visible fleet-wide once it
  is answered. Nothing else is waited for: the owner answers while its asker still waits.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

import orjson

from paradoxplex.node.sockets.session import Session
from paradoxplex.shared.sessions import SessionInfo
from paradoxplex.wire import bus_pb2

Answer = tuple[str, bytes]
#: Actions that change a socket's record in the fleet state.
CHANGES = frozenset({"pause", "resume", "labels"})


class SocketCommands:
    def __init__(
        self,
        sessions: Mapping[str, Session],
        *,
        write: Callable[[SessionInfo], Awaitable[None]],
    ) -> None:
        self.sessions = sessions
        self.write = write

    async def apply(self, command: bus_pb2.Command) -> Answer:
        """Execute, then write the change it made to the socket's record, if any."""
        answer = self.execute(command)
        if answer[0] == "ok" and command.action in CHANGES:
            session = self.sessions.get(command.client_uuid)
            if session is not None and session.info is not None:
                await self.write(session.info)
        return answer

    def execute(self, command: bus_pb2.Command) -> Answer:
        session = self.sessions.get(command.client_uuid)
        if session is None or session.info is None:
            return "not_found", b""
        info = session.info
        action = command.action
        if action == "send":
            if not session.write(command.payload):
                return "error", b"socket is closing or its write buffer is full"
        elif action in ("pause", "resume"):
            session.set_paused(action == "pause")
        elif action == "labels":
            info.labels = dict(command.labels)
        elif action == "close":
            session.close("closed by admin")
        elif action != "get":
            return "error", b"unknown action"
        return "ok", orjson.dumps(info.to_dict())

    def __repr__(self) -> str:
        return f"<SocketCommands sockets={len(self.sessions)}>"
