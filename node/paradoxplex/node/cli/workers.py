"""``--workers N``: N node processes on one listener (SO_REUSEPORT), each a fleet member.

The parent starts N children running the same command with ``PARADOXPLEX_WORKER=i`` set;
child ``i`` takes the node id ``<node_id>-w<i>`` and the admin port ``admin + i`` (port 0
stays 0). SIGTERM/SIGINT are passed on to every child; the parent exits when all have, with
the worst exit code. A child that dies is restarted after a short backoff, at most 5 times
(``retry.WORKER_RESTART``), then the parent stops the others and exits non-zero.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import subprocess
import sys
import time

from paradoxplex.shared.config import Address, NodeConfig
from paradoxplex.shared.retry import WORKER_RESTART, Backoff

log = logging.getLogger("paradoxplex.node")

WORKER_ENV = "PARADOXPLEX_WORKER"


def worker_config(config: NodeConfig, index: int) -> NodeConfig:
    """The settings of worker ``index``: its own node id and admin port."""
    admin = config.admin
    port = admin.port + index if admin.port else 0
    return dataclasses.replace(
        config, node_id=f"{config.node_id}-w{index}", admin=Address(admin.host, port)
    )


def worker_index(env: dict[str, str]) -> int | None:
    value = env.get(WORKER_ENV)
    return int(value) if value and value.isdigit() else None


def _spawn(argv: list[str], index: int, node_id: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ, **{WORKER_ENV: str(index), "PARADOXPLEX_NODE_ID": node_id})
    command = [sys.executable, "-m", "paradoxplex.node.cli", *argv]
    return subprocess.Popen(command, env=env)


def run_workers(config: NodeConfig, argv: list[str]) -> int:
    """Supervise ``config.workers`` children; returns the exit code."""
    children = {i: _spawn(argv, i, config.node_id) for i in range(config.workers)}
    stopping = False

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signum)

    def reload(signum: int, _frame: object) -> None:  # SIGHUP: each worker reloads its TLS
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGHUP, reload)
    deaths = {index: Backoff(WORKER_RESTART) for index in children}
    codes: dict[int, int] = {}
    while len(codes) < len(children):
        for index, child in list(children.items()):
            code = child.poll()
            if code is None or index in codes:
                continue
            if stopping or code == 0:
                codes[index] = code
                continue
            delay = deaths[index].failed()
            if deaths[index].exhausted:
                codes[index] = code
                log.error("worker %d keeps failing (exit %d); stopping", index, code)
                forward(signal.SIGTERM, None)
                continue
            log.warning("worker %d exited with %d; restarting", index, code)
            time.sleep(delay)
            children[index] = _spawn(argv, index, config.node_id)
        time.sleep(0.1)
    return max(codes.values(), default=0)
