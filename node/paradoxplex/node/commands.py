"""Admin commands on the sockets this node holds: the owner's side of the admin API.

Rules:
- A command names a socket by ``client_uuid`` and an action (``get``, ``send``, ``pause``,
  ``resume``, ``labels``, ``close``); the answer is ``(status, body)``: ``ok`` with the
  socket's record as orjson, ``not_found`` when this node does not hold it, ``error`` with a
  reason otherwise.
- A change (pause, resume, labels) is written to the fleet state before ``apply`` returns:
  an admin action is visible fleet-wide once it is answered.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

import orjson

from paradoxplex.node.session import Session
from paradoxplex.shared.sessions import SessionInfo
from paradoxplex.wire import bus_pb2

Answer = tuple[str, bytes]


class SocketCommands:
    def __init__(
        self,
        sessions: Mapping[str, Session],
        *,
        changed: Callable[[SessionInfo], None],
        flush: Callable[[], Awaitable[None]],
    ) -> None:
        self.sessions = sessions
        self.changed = changed
        self.flush = flush

    async def apply(self, command: bus_pb2.Command) -> Answer:
        """Execute, then write the session changes it made."""
        answer = self.execute(command)
        await self.flush()
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
            self.changed(info)
        elif action == "labels":
            info.labels = dict(command.labels)
            self.changed(info)
        elif action == "close":
            session.close("closed by admin")
        elif action != "get":
            return "error", b"unknown action"
        return "ok", orjson.dumps(info.to_dict())

    def __repr__(self) -> str:
        return f"<SocketCommands sockets={len(self.sessions)}>"
