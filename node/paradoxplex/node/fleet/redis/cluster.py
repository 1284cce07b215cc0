"""Redis Cluster as a ``FleetClient``: redis-py's asyncio ``RedisCluster`` for commands, and a
reader connection that goes to whichever master holds the inbox's slot now.

Rules:
- ``client.CLIENT_KINDS["redis+cluster"]`` builds the ``FleetClient`` from ``cluster_of`` (commands)
  and ``reader_of`` (the inbox reader's connection).
- ``redis+cluster://[user:password@]host:port[,host:port…]`` names seed nodes; the client
  learns the rest (``CLUSTER SLOTS``). Keys fall in ``CLUSTER_BUCKETS`` buckets (hash tags
  ``{0}`` … ``{15}``) spread over the masters' slots; the fleet-wide keys share ``{fleet}``.
  Every multi-key command and MULTI of the fleet stays in one tag, hence one slot.
- Commands: ``RedisCluster`` follows MOVED/ASK and, after a connection error, reloads the
  topology and retries (``retry.CLUSTER_COMMAND``: 3 times, 0.1 to 0.4 s apart; redis-py
  runs that loop, because only it can reload the map between attempts): a command in a
  failover fails or lands on the new master; the fleet's outbox holds what could not be
  sent meanwhile.
- The inbox reader's dedicated connection (``holding(key).subscriber()``) looks the master up
  at each ``connect()``, after reloading the topology: a reader that lost its master (refused,
  reset, MOVED from a master turned replica) reconnects through the same path and so never
  trusts a stale map. The known weakness of cluster clients, a connection refused again and
  again by a dead master instead of a redirect, is designed around this way.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import AbstractConnection, Connection

from paradoxplex.node.fleet.redis.retries import redis_retry
from paradoxplex.shared.errors import ConfigError
from paradoxplex.shared.placement import cluster_seeds
from paradoxplex.shared.retry import CLUSTER_COMMAND, NO_RETRY

__all__ = ["SlotConnection", "cluster_of", "master_of", "reader_of"]


async def master_of(cluster: RedisCluster, key: str) -> tuple[str, int]:
    """The master holding ``key``'s slot, after reloading the topology from the cluster."""
    await cluster.initialize()  # the first time: learn the cluster; later: nothing
    await cluster.nodes_manager.initialize()
    node = cluster.nodes_manager.get_node_from_slot(cluster.keyslot(key))
    return node.host, int(node.port)


class SlotConnection(Connection):
    """A reader connection to the master of ``key``'s slot, looked up anew at each connect."""

    def __init__(self, cluster: RedisCluster, key: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._cluster = cluster
        self._key = key

    async def connect(self) -> None:
        self.host, self.port = await master_of(self._cluster, self._key)
        await super().connect()  # type: ignore[no-untyped-call]


def cluster_of(url: str, *, socket_timeout: float, health_check_interval: float) -> RedisCluster:
    """A client of the cluster whose seeds ``url`` names (no I/O yet)."""
    try:
        user, password, seeds = cluster_seeds(url)
    except ValueError as error:
        raise ConfigError("--redis", f"redis+cluster:// URL: {error}") from None
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in seeds],
        username=user,
        password=password,
        decode_responses=False,
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_timeout,
        health_check_interval=health_check_interval,
        retry=redis_retry(CLUSTER_COMMAND),  # inside redis-py: reloads the map in between
    )


def reader_of(cluster: RedisCluster, key: str) -> AbstractConnection:
    """A fresh reader connection to the master of ``key``'s slot (no retries of its own)."""
    options = {
        **cluster.get_connection_kwargs(),
        "decode_responses": False,
        "health_check_interval": 0,
        "retry": redis_retry(NO_RETRY),  # the bus replaces a reader that broke
    }
    for pool_only in ("connection_class", "max_connections", "response_callbacks"):
        options.pop(pool_only, None)
    return SlotConnection(cluster, key, **options)
