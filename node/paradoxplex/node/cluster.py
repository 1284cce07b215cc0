"""``paradoxplex cluster``: a local fleet on loopback for development."""

from __future__ import annotations

import argparse
from typing import Any


def add_cluster_parser(commands: Any) -> None:
    cluster = commands.add_parser("cluster", help="run a local fleet: redis, nodes, echo upstreams")
    cluster.add_argument("--nodes", type=int, default=3)
    cluster.add_argument("--upstreams", type=int, default=2)


def run_cluster(args: argparse.Namespace) -> int:
    print("paradoxplex cluster: not available yet")
    return 1
