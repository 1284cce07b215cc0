"""Helpers for fleet-state tests, whatever the backend, on ``FleetState``'s public methods.

The product writes sessions in batches (``session_sync``); tests often write one at a time:
``register_session`` / ``update_session`` / ``unregister_session`` are those batches of one.
``redis_state`` is a ``RedisFleet`` on a client of its own (``client.connect``, as
``backends`` makes one), closed with it.
"""

from __future__ import annotations

from paradoxplex.node.fleet.redis import RedisFleet, connect
from paradoxplex.shared.fleet import FleetState
from paradoxplex.shared.sessions import SessionInfo


async def register_session(fleet: FleetState, info: SessionInfo) -> None:
    await fleet.register_sessions([info])


async def update_session(fleet: FleetState, info: SessionInfo) -> None:
    """Overwrite a registered session's fields; a no-op when it is not registered."""
    await fleet.update_sessions([info])


async def unregister_session(fleet: FleetState, client_uuid: str, node_id: str) -> None:
    await fleet.unregister_sessions([(client_uuid, node_id)])


def redis_state(url: str, *, prefix: str) -> RedisFleet:
    """A fleet state for ``url`` (one server, shards, a cluster) that closes its client."""
    return RedisFleet(connect(url), prefix=prefix, owns_client=True)
