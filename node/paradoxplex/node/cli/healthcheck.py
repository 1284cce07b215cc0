"""``paradoxplex health`` (a container's health check) and ``paradoxplex node --check``.

Rules:
- ``health`` probes one thing and exits 0 (healthy) or 1, printing one line. ``--admin``
  probes a node's ``/livez``, ``--upstream`` an upstream's ``ready`` RPC. With neither, it
  probes the role of the container's main process (PID 1): an ``upstream-echo`` at its
  ``--listen`` port, else a node at ``$PARADOXPLEX_ADMIN``. A wildcard host is probed on
  127.0.0.1. An admin API with TLS is probed over https: ``--admin https://HOST:PORT``, or
  found from the main process (``--admin-tls-cert`` or ``$PARADOXPLEX_ADMIN_TLS_CERT``); its
  certificate is checked against ``--ca`` when given, else not (``/livez`` needs no token).
- ``node --check`` loads the configuration (a bad setting has already exited 2), then checks
  that the listener and admin ports are free, that Redis answers and that every upstream is
  ready; one line per check (``ok: …`` or ``problem: …``); exit 0 when there is no problem.
  ``node --check=config`` checks the settings and their files (TLS, the open-file limit) and
  reaches nothing: a service manager runs it before every start, when an upstream may well be
  down (a node starts anyway and waits for it).
  Warnings (no upstream; an open-file limit too low for ``--max-connections``) are lines of
  their own (``warning: …``) that do not fail the check.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from paradoxplex.node.cli.checks import (
    DEFAULT_TIMEOUT,
    admin_problem,
    redis_problem,
    upstream_problem,
)
from paradoxplex.node.sockets.open_files import open_files_limit
from paradoxplex.node.tls import file_problems, upstream_credentials
from paradoxplex.shared.admission import fd_shortfall, socket_room
from paradoxplex.shared.config import DEFAULT_ADMIN, Address, NodeConfig, parse_address
from paradoxplex.shared.credentials import redact_url
from paradoxplex.shared.errors import ConfigError
from paradoxplex.shared.upstreams import EXAMPLE_UPSTREAM

WILDCARDS = ("0.0.0.0", "::", "")


@dataclass(frozen=True, slots=True)
class Target:
    """What to probe: ``kind`` is ``admin`` or ``upstream``."""

    kind: str
    address: Address
    tls: bool = False

    def __str__(self) -> str:
        return f"{self.kind} {self.address}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.address}"


def local(address: Address) -> Address:
    """A wildcard listener is reached on loopback."""
    return Address("127.0.0.1", address.port) if address.host in WILDCARDS else address


def target_of(argv: list[str], env: dict[str, str]) -> Target:
    """The role of a process started with ``argv`` (``paradoxplex … upstream-echo --listen
    H:P`` or a node), and the address that answers for it."""
    if "upstream-echo" in argv:
        rest = argv[argv.index("upstream-echo") + 1 :]
        listen = str(EXAMPLE_UPSTREAM)
        for i, word in enumerate(rest):
            if word == "--listen" and i + 1 < len(rest):
                listen = rest[i + 1]
            elif word.startswith("--listen="):
                listen = word.partition("=")[2]
        return Target("upstream", local(parse_address("--listen", listen)))
    admin = env.get("PARADOXPLEX_ADMIN") or str(DEFAULT_ADMIN)
    tls = bool(env.get("PARADOXPLEX_ADMIN_TLS_CERT")) or any(
        word.startswith("--admin-tls-cert") for word in argv
    )
    return Target("admin", local(parse_address("PARADOXPLEX_ADMIN", admin)), tls)


def admin_target(text: str) -> Target:
    """``--admin HOST:PORT``, ``http://HOST:PORT`` or ``https://HOST:PORT``."""
    scheme, sep, rest = text.partition("://")
    if sep and scheme not in ("http", "https"):
        raise ConfigError("--admin", f"expected http:// or https://, got {scheme}://")
    address = parse_address("--admin", rest.rstrip("/") if sep else text)
    return Target("admin", local(address), tls=scheme == "https")


def main_process_argv() -> list[str]:
    try:
        raw = Path("/proc/1/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def add_health_parser(commands: Any) -> None:
    health = commands.add_parser(
        "health",
        help="probe a node or an upstream once (a container health check)",
        description="Exit 0 when the probed node or upstream is healthy, else print why and "
        "exit 1. Without --admin or --upstream: probe the role of the container's main "
        "process (PID 1).",
    )
    health.add_argument(
        "--admin", metavar="HOST:PORT", help="probe a node's admin /livez (https://H:P: over TLS)"
    )
    health.add_argument(
        "--ca", metavar="FILE", help="PEM CA that an https admin API's certificate must chain to"
    )
    health.add_argument("--upstream", metavar="HOST:PORT", help="probe an upstream's ready RPC")
    health.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds (default: %(default)g)"
    )


async def probe(target: Target, *, within: float, ca: str | None = None) -> str | None:
    if target.kind == "upstream":
        return await upstream_problem(str(target.address), within=within)
    return await admin_problem(target.url, within=within, ca=ca)


def run_health(args: argparse.Namespace) -> int:
    try:
        if args.upstream:
            target = Target("upstream", local(parse_address("--upstream", args.upstream)))
        elif args.admin:
            target = admin_target(args.admin)
        else:
            target = target_of(main_process_argv(), dict(os.environ))
    except ConfigError as error:
        print(f"paradoxplex health: {error}", file=sys.stderr)
        return 2
    try:
        problem = asyncio.run(probe(target, within=args.timeout, ca=args.ca))
    except ConfigError as error:
        print(f"paradoxplex health: {error}", file=sys.stderr)
        return 2
    if problem is None:
        print(f"healthy: {target}")
        return 0
    print(f"unhealthy: {target}: {problem}", file=sys.stderr)
    return 1


def port_problem(address: Address) -> str | None:
    """None when ``address`` can be bound now (port 0 always can)."""
    if address.port == 0:
        return None
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address.host, address.port))
        except OSError as error:
            return (error.strerror or str(error)).lower()
    return None


async def check_lines(
    config: NodeConfig, *, within: float = DEFAULT_TIMEOUT, reach: bool = True
) -> list[str]:
    """One ``ok: …``, ``problem: …`` or ``warning: …`` line per check of ``config``
    (``reach``: also the ports, Redis and the upstreams)."""
    checks = await reach_problems(config, within=within) if reach else []
    checks += file_problems(config)
    lines = [f"ok: settings of node {config.node_id}"]
    lines += [f"problem: {what}: {why}" if why else f"ok: {what}" for what, why in checks]
    if not config.upstream:
        lines.append("warning: no --upstream: sockets would wait for one to be added")
    limit = open_files_limit()
    shortfall = fd_shortfall(config.max_connections, limit)
    lines.append(
        f"warning: {shortfall}"
        if shortfall
        else f"ok: open-file limit {limit}: room for {socket_room(limit)} sockets"
    )
    return lines


async def reach_problems(config: NodeConfig, *, within: float) -> list[tuple[str, str | None]]:
    """(what, problem or None) for the ports, Redis and every upstream."""
    checks: list[tuple[str, str | None]] = [
        (f"--listen {config.listen}", port_problem(config.listen)),
        (f"--admin {config.admin}", port_problem(config.admin)),
    ]
    if config.redis:
        checks.append((f"--redis {redact_url(config.redis)}", await redis_problem(config.redis)))
    credentials = None
    if config.upstream_tls:
        try:
            credentials = upstream_credentials(config)
        except ConfigError:  # reported by file_problems; probe with the system's CAs
            credentials = grpc.ssl_channel_credentials()
    problems = await asyncio.gather(
        *(
            upstream_problem(str(address), within=within, credentials=credentials)
            for address in config.upstream
        )
    )
    return checks + [
        (f"--upstream {address}", problem)
        for address, problem in zip(config.upstream, problems, strict=True)
    ]


def run_check(config: NodeConfig, *, reach: bool = True) -> int:
    within = min(DEFAULT_TIMEOUT, config.ready_timeout)
    lines = asyncio.run(check_lines(config, within=within, reach=reach))
    for line in lines:
        print(line, file=sys.stderr if line.startswith("problem") else sys.stdout)
    return 1 if any(line.startswith("problem") for line in lines) else 0
