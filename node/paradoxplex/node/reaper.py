"""Cleaning up after dead nodes: exactly one survivor (SET NX EX) removes their sessions."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from paradoxplex.wire import upstream_pb2 as pb

if TYPE_CHECKING:
    from paradoxplex.node.node import Node

log = logging.getLogger("paradoxplex.fleet")


async def reap_dead_nodes(node: Node) -> list[str]:
    """Find registered nodes whose liveness expired; clean up those this node wins."""
    fleet = node.fleet
    cleaned = []
    for other in await fleet.known_nodes():
        if other == node.node_id or await fleet.node_alive(other):
            continue
        if not await fleet.claim_cleanup(other, node.node_id, ttl=node.config.node_ttl):
            continue
        sessions = await fleet.node_sessions(other)
        if node.config.lifecycle_events:
            for session in sessions:
                event = pb.SocketEvent(
                    kind=pb.SocketEvent.DISCONNECTED, node_id=other, reason="node lost"
                )
                node.pool.send_event(session, event)
        await fleet.unregister_node(other)
        log.warning("node %s is dead: removed it and its %d sockets", other, len(sessions))
        cleaned.append(other)
    return cleaned
