"""The node as both sides of a hot handoff see it: the parts they act through, and its
listening ends seen through what each side calls.

Rules:
- A side is given these parts, not the node: the ``NodeState`` (ids, sockets), the hosting,
  the pool, the bus endpoint, the socket commands (their idempotency keys move too), the
  upkeep, the listening ends and the metrics. What only one side needs it gets on its own.
- The old side sees the listening ends as ``Listening`` (duplicates of the listening sockets,
  stop accepting, listen again after a thaw), the new side as ``Serving`` (say where it
  listens, then serve on the inherited sockets); the node's ends are both (``Ends``).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Protocol

from paradoxplex.node.delivery.commands import SocketCommands
from paradoxplex.node.delivery.endpoint import BusEndpoint
from paradoxplex.node.fleet.upkeep import FleetUpkeep
from paradoxplex.node.links.pool import UpstreamPool
from paradoxplex.node.metrics import Metrics
from paradoxplex.node.sockets.hosting import SessionHosting
from paradoxplex.node.state import NodeState


class Listening(Protocol):
    """The node's listening ends, as the old side of a handoff needs them."""

    def listening_sockets(self) -> tuple[socket.socket | None, socket.socket | None]:
        """Duplicates of the listener's and the admin API's listening sockets."""

    async def stop_listening(self) -> None:
        """Accept nothing more (admin requests under way finish)."""

    async def listen_again(
        self, listener: socket.socket | None, admin: socket.socket | None
    ) -> None: ...


class Serving(Protocol):
    """The node's listening ends, as the new side of a handoff needs them."""

    def addresses(self, listener: socket.socket, admin: socket.socket | None) -> None:
        """Say where this node listens (from the inherited sockets); serve nothing yet."""

    async def serve(self, listener: socket.socket, admin: socket.socket | None) -> None:
        """Accept on the inherited sockets."""


class Ends(Listening, Serving, Protocol):
    """The node's listening ends, as both sides of a handoff need them."""


@dataclass(frozen=True, slots=True)
class HandoffParts:
    """The parts of the node both sides of a handoff act through."""

    state: NodeState
    hosting: SessionHosting
    pool: UpstreamPool
    endpoint: BusEndpoint
    commands: SocketCommands
    upkeep: FleetUpkeep
    serving: Ends
    metrics: Metrics
