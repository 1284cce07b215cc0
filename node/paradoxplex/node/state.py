"""What the parts of one node share, made before any of them (uvicorn's ``ServerState``).

Rules:
- Small on purpose: a part gets this when it reads what several parts read (the node id, the
  sockets held, whether the node drains, where it listens), and gets everything else it needs
  as parameters of its own.
- One writer per field: ``sessions`` is written by ``SessionHosting`` (a socket opened or
  closed); ``draining``, ``listen_address`` and ``admin_url`` by the node (it starts to drain,
  it bound its listener, its admin API); ``last_handoff`` by the takeover that made this
  process the node. Every other part only reads them.
- No I/O, no decisions: plain fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from paradoxplex.node.sockets.session import Session


@dataclass(slots=True, eq=False)
class NodeState:
    """The node id, its sockets (``client_uuid`` → ``Session``) and its addresses."""

    node_id: str
    started_at: float
    sessions: dict[str, Session] = field(default_factory=dict)
    draining: bool = False
    listen_address: str = ""
    admin_url: str = ""
    last_handoff: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return (
            f"<NodeState {self.node_id} sockets={len(self.sessions)} "
            f"draining={self.draining} listen={self.listen_address!r}>"
        )
