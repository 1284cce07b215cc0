"""A real Redis Cluster for tests: ``masters`` redis-servers with ``--cluster-enabled yes``,
each with ``replicas`` replicas, on 127.0.0.1 and free ports, joined by ``redis-cli --cluster
create`` (``paradoxplex.node.cli.devfleet.redis_servers.form_cluster``, as ``paradoxplex
cluster`` does).

``url`` is the ``redis+cluster://`` seed list; ``masters()`` asks the cluster which servers are
masters now (after a failover the promoted replica is one); ``wait_healthy()`` polls
``CLUSTER INFO`` on every live node until each says ``cluster_state:ok`` and every slot has a
live master, and ``ROLE`` on every replica until its link to its master is up: a replica that
never finished its first sync refuses to fail over (its data counts as older than
``cluster-replica-validity-factor`` allows), so a master killed before that stays dead.
``master_of(key)`` is the server every live node names as master of ``key``'s slot, or None
while they disagree or name a dead one: poll it to wait for a failover.
"""

from __future__ import annotations

import time
from types import TracebackType

from redis import Redis
from redis.crc import key_slot

from paradoxplex.node.cli.devfleet.redis_servers import (
    cluster_node_args,
    form_cluster,
    free_cluster_port,
)
from tests.support.redis_server import RedisServer

__all__ = ["ClusterServers"]

HEALTHY_TIMEOUT = 20.0


class ClusterServers:
    """``masters`` x (1 + ``replicas``) Cluster nodes; ``start()``, ``close()``, ``url``."""

    def __init__(self, *, masters: int = 3, replicas: int = 0, node_timeout_ms: int = 1500):
        self.count = masters * (1 + replicas)
        self.replicas = replicas
        self.node_timeout_ms = node_timeout_ms
        self.servers: list[RedisServer] = []

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"{s.host}:{s.port}" for s in self.servers)

    def start(self) -> ClusterServers:
        for _ in range(self.count):
            server = RedisServer(use_docker=False)
            server.args = tuple(cluster_node_args("nodes.conf", self.node_timeout_ms))
            server.port = free_cluster_port()  # its bus port, + 10000, must be valid too
            self.servers.append(server.start())
        assert self.servers[0].executable is not None
        addresses = [f"{s.host}:{s.port}" for s in self.servers]
        form_cluster(self.servers[0].executable, addresses, replicas=self.replicas)
        self.wait_healthy()
        return self

    def live(self) -> list[RedisServer]:
        return [server for server in self.servers if server.running]

    def masters(self) -> list[RedisServer]:
        """The live servers that are masters now."""
        found = []
        for server in self.live():
            with Redis(host=server.host, port=server.port) as client:
                if client.execute_command("ROLE")[0] == b"master":
                    found.append(server)
        return found

    def wait_healthy(self, timeout: float = HEALTHY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not self._healthy():
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cluster was not healthy within {timeout:g} s")
            time.sleep(0.05)  # a poll interval, bounded by the deadline

    def _healthy(self) -> bool:
        for server in self.live():
            with Redis(host=server.host, port=server.port, socket_timeout=1) as client:
                info = client.execute_command("CLUSTER", "INFO").decode()
                if "cluster_state:ok" not in info:
                    return False
                role = client.execute_command("ROLE")
                if role[0] == b"slave" and role[3] != b"connected":
                    return False  # still syncing: it could not take over yet
        return True

    def master_of(self, key: str) -> RedisServer | None:
        """The live server that every live node names as master of ``key``'s slot; None while
        they disagree, or name a server that is dead (a failover not finished yet)."""
        slot = key_slot(key.encode())
        named = {self._master_as_seen_by(server, slot) for server in self.live()}
        if len(named) != 1:
            return None
        port = named.pop()
        return next((s for s in self.live() if s.port == port), None)

    @staticmethod
    def _master_as_seen_by(server: RedisServer, slot: int) -> int | None:
        with Redis(host=server.host, port=server.port, socket_timeout=1) as client:
            for start, end, master, *_ in client.execute_command("CLUSTER", "SLOTS"):
                if start <= slot <= end:
                    return int(master[1])
        return None

    def close(self) -> None:
        for server in self.servers:
            server.close()
        self.servers = []

    def __enter__(self) -> ClusterServers:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
