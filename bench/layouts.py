"""The Redis layouts of the ``fleet`` case, as ``paradoxplex cluster --redis-mode`` lays them
out: ``single`` (one server), ``shards`` (three independent servers, their URLs comma-joined)
and ``cluster`` (a Redis Cluster of three masters, no replicas, given as ``redis+cluster://``).

``Layout.counters()`` reads what each server has spent (``INFO cpu`` user+sys seconds, ``INFO
stats`` total_commands_processed); the difference of two readings is the per-server Redis
CPU and operation count of what ran between them. ``sessions()`` and ``used_memory()`` sum
over every server of the layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from bench.procs import Procs, free_port
from bench.systems import RedisServer, redis_binary
from paradoxplex.node.cli.devfleet.redis_servers import (
    cluster_node_args,
    form_cluster,
    free_cluster_port,
)

MODES = ("single", "shards", "cluster")
SERVERS = 3  # of ``shards`` and of ``cluster`` (masters)
READY_TIMEOUT = 10.0


@dataclass(frozen=True)
class Spent:
    """One server's totals at one moment."""

    cpu_s: float
    commands: int


@dataclass
class Layout:
    mode: str
    servers: list[RedisServer]
    url: str

    def counters(self) -> list[Spent]:
        found = []
        for server in self.servers:
            cpu, stats = server.client.info("cpu"), server.client.info("stats")
            cpu_s = float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])
            found.append(Spent(cpu_s, int(stats["total_commands_processed"])))
        return found

    def used_memory(self) -> int:
        return sum(server.used_memory() for server in self.servers)

    def sessions(self, prefix: str) -> int:
        """Session records on every server (the ``<prefix>:session-data:{n}`` hashes): each
        server is asked about the keys it holds, so no request is redirected."""
        count = 0
        for server in self.servers:
            for key in server.client.scan_iter(match=f"{prefix}:session-data:*", count=100):
                count += int(server.client.hlen(key))
        return count


def _server(procs: Procs, name: str, port: int, extra: list[str]) -> RedisServer:
    argv = [redis_binary(), "--port", str(port), "--bind", "127.0.0.1"]
    argv += ["--save", "", "--appendonly", "no", *extra]
    proc = procs.start(name, argv)
    proc.wait_log(r"Ready to accept connections", timeout=READY_TIMEOUT)
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)
    client.ping()
    return RedisServer(proc, port, client)


def start_layout(procs: Procs, mode: str) -> Layout:
    if mode == "single":
        server = _server(procs, f"{mode}-redis", free_port(), [])
        return Layout(mode, [server], server.url)
    if mode == "shards":
        servers = [_server(procs, f"{mode}-redis{i + 1}", free_port(), []) for i in range(SERVERS)]
        return Layout(mode, servers, ",".join(server.url for server in servers))
    if mode != "cluster":
        raise ValueError(f"unknown Redis layout {mode!r}")
    servers = []
    for i in range(SERVERS):
        state = procs.log_dir / f"{mode}-redis{i + 1}-nodes.conf"
        state.unlink(missing_ok=True)  # a left-over state file would hold an old cluster
        extra = cluster_node_args(str(state))
        servers.append(_server(procs, f"{mode}-redis{i + 1}", free_cluster_port(), extra))
    addresses = [f"127.0.0.1:{server.port}" for server in servers]
    form_cluster(redis_binary(), addresses, replicas=0)
    return Layout(mode, servers, "redis+cluster://" + ",".join(addresses))
