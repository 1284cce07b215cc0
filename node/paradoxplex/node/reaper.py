"""Cleaning up after dead nodes: exactly one survivor (SET NX EX) removes their sessions."""

from __future__ import annotations

import logging

from paradoxplex.shared.fleet import FleetState

log = logging.getLogger("paradoxplex.node.fleet")


async def reap_dead_nodes(
    fleet: FleetState, *, node_id: str, ttl: float
) -> list[tuple[str, list[str]]]:
    """Remove the registered nodes whose liveness expired and that this node wins the right
    to clean up; each as ``(dead node id, the sessions it held)``."""
    cleaned = []
    for other in await fleet.known_nodes():
        if other == node_id or await fleet.node_alive(other):
            continue
        if not await fleet.claim_cleanup(other, node_id, ttl=ttl):
            continue
        sessions = await fleet.node_sessions(other)
        await fleet.unregister_node(other)
        log.warning("node %s is dead: removed it and its %d sockets", other, len(sessions))
        cleaned.append((other, sessions))
    return cleaned
