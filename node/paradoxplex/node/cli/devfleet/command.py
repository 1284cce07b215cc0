"""The ``paradoxplex cluster`` command: its arguments, its loop, what it prints and the
commands typed on its standard input.

Rules:
- ``--nodes`` at least 1 (exit 2 otherwise, one line); a start-up that fails says why in one
  line and exits 1, after stopping whatever had started.
- The addresses go to standard output, then ``cluster up``; every later notice (a member
  died or restarted, an upgrade's progress, an answer to a typed command) to standard error.
- SIGINT or SIGTERM stops the fleet (exit 0); SIGUSR1 upgrades every node in place.
- Typed commands: ``upgrade NODE`` or ``upgrade all``, one a line; a partial line waits for
  its end; anything else is answered with what works. A closed or unreadable input is
  read no more (the fleet runs on).
- The loop wakes every 0.2 s to read commands and supervise the members.
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import sys
import time
from typing import Any, TextIO

from paradoxplex.node.cli.devfleet.layout import REDIS_MODES, start
from paradoxplex.node.cli.devfleet.processes import Cluster
from paradoxplex.shared.config import DEFAULT_LISTEN
from paradoxplex.shared.keys import DEFAULT_PREFIX
from paradoxplex.shared.upstreams import EXAMPLE_UPSTREAM


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
        for line in start(cluster):
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
