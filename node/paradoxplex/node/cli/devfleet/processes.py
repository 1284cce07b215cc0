"""The dev fleet's members as processes: started, watched, restarted, upgraded, stopped.

Rules:
- A member that dies is reported and restarted after a backoff (``retry.MEMBER_RESTART``:
  1 s, 2 s, 4 s … up to 30 s, at least the member's ``min_delay``); the others keep running.
- An upgrade in place starts a new process of the program on disk with ``--take-over`` on
  the node's handoff socket, one node at a time (queued in ``upgrades``): the new process
  becomes the member once the old one exits; a new process that exits first failed and
  the old one serves on.
- Stopping: the nodes first (they drain and leave the fleet), then the upstreams, then
  Redis; SIGTERM, then SIGKILL after ``STOP_TIMEOUT`` seconds (10).
- A member is up once its port accepts a connection, within ``STARTUP_TIMEOUT`` seconds
  (20), or start-up fails with ``RuntimeError``.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass

from paradoxplex.shared.retry import MEMBER_RESTART

STARTUP_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0


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
    #: The shortest wait before a restart (see ``layout.SENTINEL_RESTART_DELAY``).
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
    """The processes of a local fleet (its ``args``: the command's; ``layout`` reads them)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.members: list[Member] = []
        self.upgrades: list[Member] = []
        self.workdir = tempfile.mkdtemp(prefix="paradoxplex-cluster-")

    def add(
        self, name: str, role: str, command: list[str], min_delay: float = 0.0, handoff: str = ""
    ) -> subprocess.Popen[bytes]:
        """Start member ``name``, supervised from now on; its process."""
        member = Member(name, role, command, min_delay=min_delay, handoff=handoff)
        self.members.append(member)
        return member.start()

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
