"""The fleet on Redis: what the nodes share (``RedisFleet``) and how they talk (``RedisBus``).

One module per job, read in this order:
- ``client``      the one table from a URL kind to a client (``CLIENT_KINDS``, ``connect``);
                  state and bus take the ``FleetClient`` it gives and never ask its mode
- ``sentinel``    the master a Sentinel names, followed through a failover (a client kind)
- ``errors``      Redis and socket errors become ``FleetUnavailable`` here, once
- ``rows``        how sessions, nodes and upstreams are stored (no I/O)
- ``scripts``     the Lua scripts: a check and the write it allows, in one step
- ``sessions``    the sessions' rows, each node's index of them, paging, stale rows
- ``state``       ``RedisFleet``, the ``FleetState`` on Redis, made of the two
- ``entries``     how an envelope sits in a stream entry (no I/O)
- ``outbox``      the bus's sending end: numbered adds, in order, held through outages
- ``inbox``       the bus's receiving end: one watched reader, resumed where it stopped
- ``bus``         ``RedisBus``, the ``FleetBus`` on Redis Streams, made of the two
"""

from __future__ import annotations

from paradoxplex.node.fleet.redis.bus import AliveCheck, RedisBus
from paradoxplex.node.fleet.redis.client import CLIENT_KINDS, FleetClient, connect, single_server
from paradoxplex.node.fleet.redis.state import RedisFleet

__all__ = [
    "CLIENT_KINDS",
    "AliveCheck",
    "FleetClient",
    "RedisBus",
    "RedisFleet",
    "connect",
    "single_server",
]
