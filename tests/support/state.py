"""Helpers for fleet-state tests, whatever the backend, on ``FleetState``'s public methods.

The product writes sessions in batches (``session_sync``); tests often write one at a time:
``register_session`` / ``update_session`` / ``unregister_session`` are those batches of one;
``node_sessions`` lists one node's visible sessions, every page.
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


async def node_sessions(fleet: FleetState, node_id: str) -> list[str]:
    """The ``client_uuid`` of every visible session of ``node_id``, sorted."""
    found: list[str] = []
    cursor: str | None = None
    for _ in range(10_000):
        infos, cursor = await fleet.list_sessions(node=node_id, cursor=cursor, limit=1000)
        found += [info.client_uuid for info in infos]
        if cursor is None:
            return found
    raise AssertionError("the cursor never ended")


def redis_state(url: str, *, prefix: str) -> RedisFleet:
    """A fleet state for ``url`` (one server, shards, a cluster) that closes its client."""
    return RedisFleet(connect(url), prefix=prefix, owns_client=True)
