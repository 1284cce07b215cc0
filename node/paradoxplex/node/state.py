"""What the parts of one node share, made before any of them (uvicorn's ``ServerState``).

Rules:
- Small on purpose: a part gets this when it reads what several parts read (the node id, the
  sockets held, whether the node drains, where it listens), and gets everything else it needs
  as parameters of its own.
- One writer per field: ``sessions`` is written by ``SessionHosting`` (a socket opened or
  closed); ``draining`` by ``SocketDrain`` (the node starts to drain); ``listen_address`` and
  ``admin_url`` by ``ListeningEnds`` (it bound the listener, the admin API, or took them
  over); ``last_handoff`` by the takeover that made this process the node. Every other part
  only reads them. ``node_id``, ``incarnation`` (new at each start, a takeover's too:
  ``shared.incarnations``) and ``started_at`` never change. ``predecessor`` is written by
  the upkeep: the incarnation a takeover replaced, until this one has written every socket's
  record as its own.
- No I/O, no decisions: plain fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from paradoxplex.node.sockets.session import Session
from paradoxplex.shared.incarnations import new_incarnation


@dataclass(slots=True, eq=False)
class NodeState:
    """The node id and incarnation, its sockets (``client_uuid`` → ``Session``) and its
    addresses."""

    node_id: str
    started_at: float
    incarnation: str = field(default_factory=new_incarnation)
    sessions: dict[str, Session] = field(default_factory=dict)
    draining: bool = False
    listen_address: str = ""
    admin_url: str = ""
    last_handoff: dict[str, Any] | None = None
    predecessor: str = ""  # a hot handoff's old incarnation, until its records are rewritten

    def __repr__(self) -> str:
        return (
            f"<NodeState {self.node_id} incarnation={self.incarnation} "
            f"sockets={len(self.sessions)} "
            f"draining={self.draining} listen={self.listen_address!r}>"
        )
