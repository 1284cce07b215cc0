"""Cleaning up after dead nodes: exactly one survivor (SET NX EX) removes their sessions.

The dead node's last incarnation (its stored record's) is the one removed: a node that came
back under the same id meanwhile keeps its claim, its record and its sessions. The survivor
tells every node first (``announce``, over the bus: ``node_gone``), so that no node waits for
the dead one's answer once its sockets leave the lists (a 404 is a 404 at once).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from paradoxplex.shared.fleet import FleetState

log = logging.getLogger("paradoxplex.node.fleet")


@dataclass(slots=True)
class Census:
    """What one look at the fleet's nodes found: the other nodes alive, and the dead ones this
    node cleaned up, each with the ``client_uuid`` of every socket it held."""

    alive: list[str] = field(default_factory=list)
    dead: list[str] = field(default_factory=list)
    cleaned: list[tuple[str, list[str]]] = field(default_factory=list)


async def reap_dead_nodes(
    fleet: FleetState, *, node_id: str, ttl: float, announce: Callable[[str], Awaitable[None]]
) -> Census:
    """Remove the registered nodes whose liveness expired and that this node wins the right
    to clean up (``announce``-d first); note the others, alive or dead."""
    census = Census()
    for other in await fleet.known_nodes():
        if other == node_id:
            continue
        if await fleet.node_alive(other):
            census.alive.append(other)
            continue
        census.dead.append(other)
        if not await fleet.claim_cleanup(other, node_id, ttl=ttl):
            continue
        await announce(other)
        record = await fleet.node_record(other)
        dead = record.incarnation if record is not None else ""
        client_uuids = await fleet.unregister_node(other, incarnation=dead)
        log.warning("node %s is dead: removed it and its %d sockets", other, len(client_uuids))
        census.cleaned.append((other, client_uuids))
    return census
