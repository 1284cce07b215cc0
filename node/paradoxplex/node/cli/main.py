"""The ``paradoxplex`` command: ``node``, ``upstream-echo``, ``admin``, ``cluster``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import difflib
import importlib.metadata
import logging
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from typing import Any, NoReturn

from paradoxplex.node.cli.workers import worker_index
from paradoxplex.node.grpc_env import apply_grpc_defaults
from paradoxplex.node.logs import setup_logging
from paradoxplex.node.sockets.open_files import open_files_limit, raise_open_files
from paradoxplex.shared.admission import fd_shortfall
from paradoxplex.shared.config import NodeConfig, load_config, parse_address, read_toml
from paradoxplex.shared.errors import ConfigError, HandoffError, HandoffRefused
from paradoxplex.shared.flags import add_node_arguments
from paradoxplex.shared.upstreams import EXAMPLE_UPSTREAM, UPSTREAM_GRACE

log = logging.getLogger("paradoxplex.node")
CHECKS = ("all", "config")  # node --check: everything, or what needs no network


def version() -> str:
    try:
        return importlib.metadata.version("paradoxplex")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr: what is wrong, the closest option
    when one was misspelled, and where the help is (argparse would print the whole usage,
    37 lines for ``node``, before the one line that matters). Sub-commands inherit it."""

    commands: argparse.Action | None = None  # its sub-commands, when it has some

    def add_subparsers(self, **kwargs: Any) -> Any:
        self.commands = super().add_subparsers(**kwargs)
        return self.commands

    def error(self, message: str) -> NoReturn:
        hint = self.suggestion(message)
        self.exit(2, f"{self.prog}: {message}{hint}; see '{self.prog} --help'\n")

    def suggestion(self, message: str) -> str:
        """`` (did you mean --upstream?)`` for the first unknown option that resembles one."""
        if not message.startswith("unrecognized arguments: "):
            return ""
        known = sorted(set(re.findall(r"--[\w-]+", self.format_help())))
        for word in message.removeprefix("unrecognized arguments: ").split():
            close = difflib.get_close_matches(word.split("=")[0], known, n=1, cutoff=0.7)
            if word.startswith("-") and close:
                return f" (did you mean {close[0]}?)"
        return ""

    def chosen(self, args: argparse.Namespace) -> argparse.ArgumentParser:
        """The deepest sub-command's parser that ``args`` went through (``admin sockets``)."""
        commands = self.commands
        choices: dict[str, argparse.ArgumentParser] = getattr(commands, "choices", None) or {}
        name = getattr(args, commands.dest, None) if commands is not None else None
        sub = choices.get(name) if isinstance(name, str) else None
        if isinstance(sub, OneLineParser):
            return sub.chosen(args)
        return sub or self


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="paradoxplex",
        description="A clustered TCP load balancer that demultiplexes raw sockets to gRPC.",
    )
    shown = f"paradoxplex {version()}"
    parser.add_argument("--version", action="version", version=shown)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    node = commands.add_parser(
        "node", help="run a balancer node", description="Run a balancer node."
    )
    node.add_argument("--version", action="version", version=shown)
    node.add_argument(
        "--check",
        nargs="?",
        const="all",
        choices=CHECKS,
        metavar="all|config",
        help="load and check the whole configuration, reach Redis and every upstream, "
        "print one line per problem, and exit (0: all good, 1: a problem); --check=config: "
        "the settings and their files only, reaching nothing (for systemd's ExecStartPre)",
    )
    add_node_arguments(node)
    echo = commands.add_parser("upstream-echo", help="an example upstream that echoes payloads")
    echo.add_argument(
        "--listen", default=str(EXAMPLE_UPSTREAM), metavar="HOST:PORT", help="default: %(default)s"
    )
    echo.add_argument(
        "--broadcast-every",
        type=int,
        default=0,
        metavar="N",
        help="also broadcast every Nth payload (default: 0, never)",
    )
    echo.add_argument(
        "--original", action="store_true", help="serve only the original three RPCs (no batch path)"
    )
    echo.add_argument(
        "--grace",
        type=float,
        default=UPSTREAM_GRACE,
        metavar="S",
        help="on SIGTERM or SIGINT: seconds to finish what runs, send its replies and hand "
        "back the rest before exiting 0 (default: %(default)g)",
    )
    echo.add_argument(
        "--no-acks",
        action="store_true",
        help="do not acknowledge messages (at-most-once, as before acknowledgements; for "
        "benchmarks)",
    )
    echo.add_argument("--tls-cert", metavar="FILE", help="serve TLS with this PEM certificate")
    echo.add_argument("--tls-key", metavar="FILE", help="the PEM private key of --tls-cert")
    echo.add_argument(
        "--tls-client-ca",
        metavar="FILE",
        help="require client certificates signed by this PEM CA (mTLS)",
    )
    from paradoxplex.admin.cli import add_admin_parser

    add_admin_parser(commands)
    from paradoxplex.node.cli.devfleet.command import add_cluster_parser

    add_cluster_parser(commands)
    from paradoxplex.node.cli.healthcheck import add_health_parser

    add_health_parser(commands)
    return parser


def parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse; an unknown option is reported with the usage of its own sub-command."""
    args, extras = parser.parse_known_args(argv)
    if extras:
        sub = parser.chosen(args) if isinstance(parser, OneLineParser) else parser
        sub.error(f"unrecognized arguments: {' '.join(extras)}")
    return args


def install_uvloop() -> str:
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


def node_config(args: argparse.Namespace, env: dict[str, str]) -> NodeConfig:
    path = args.config or env.get("PARADOXPLEX_CONFIG")
    toml = read_toml(path) if path else None
    return load_config(vars(args), env, toml)


async def run_node(config: NodeConfig) -> None:
    from paradoxplex.node.collector import tune_collector
    from paradoxplex.node.fleet.backends import build_backend, starting
    from paradoxplex.node.handoff.new import reach
    from paradoxplex.node.handoff.terms import terms_of
    from paradoxplex.node.node import Node
    from paradoxplex.node.systemd import notify

    shortfall = fd_shortfall(config.max_connections, open_files_limit())
    if shortfall:
        log.warning(shortfall)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    handshake = None
    if config.take_over:  # the old process's offer says which node this becomes
        handshake = await reach(config.take_over, terms_of(config), version=version())
        if not config.node_id:
            config = dataclasses.replace(config, node_id=handshake.node_id)
            setup_logging(config.log_level, config.log_format, node_id=config.node_id)
    node = Node(config, await build_backend(config))
    async with starting(config):  # a Redis error here: one line, no traceback
        if handshake is not None:
            await node.take_over(handshake)
        else:
            await node.start()
    tune_collector()
    loop.add_signal_handler(signal.SIGHUP, node.reload_certificates)
    if config.handoff_socket:
        loop.add_signal_handler(signal.SIGUSR2, upgrade_in_place, config.handoff_socket)
    if not node.pool.links:
        log.warning(
            "no upstream registered: sockets are accepted but their data waits "
            "(hold_timeout %gs); add one with --upstream or `paradoxplex admin upstream-add`",
            config.hold_timeout,
        )
    print(
        f"paradoxplex node {node.node_id} listening on {node.listen_address}, "
        f"admin on {node.admin_url}",
        flush=True,
    )
    # after a takeover this process is the unit's main one (a worker never says so)
    notify(*([f"MAINPID={os.getpid()}"] if handshake is not None else []), "READY=1")
    stopping = asyncio.ensure_future(stop.wait())
    finished = asyncio.ensure_future(node.stopped.wait())
    orphaned = asyncio.ensure_future(_supervisor_gone(os.getppid()))
    await asyncio.wait({stopping, finished, orphaned}, return_when=asyncio.FIRST_COMPLETED)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _force_exit)
    await node.stop()
    for waiting in (stopping, finished, orphaned):
        waiting.cancel()


async def _supervisor_gone(parent: int, *, every: float = 1.0) -> None:
    """Returns when a ``--workers`` child's supervisor died without stopping it (killed with
    SIGKILL): the worker then drains and stops instead of running on as an orphan."""
    if worker_index(dict(os.environ)) is None:
        await asyncio.Event().wait()  # not a worker: never
    while os.getppid() == parent:  # noqa: ASYNC110 - a parent's death sends no event
        await asyncio.sleep(every)
    log.warning("the --workers supervisor (pid %d) is gone; stopping", parent)


def upgrade_in_place(path: str) -> None:
    """SIGUSR2: start this very command again (the program on disk now: an upgrade) with
    ``--take-over PATH``; it takes this node over and this process exits. Its output goes
    where this one's does; a failure is its one line, and this process serves on."""
    if sys.argv[0].endswith("__main__.py"):  # python -m paradoxplex.node.cli
        argv = [sys.executable, "-m", "paradoxplex.node.cli", *sys.argv[1:]]
    else:
        argv = list(sys.argv)
    log.info("upgrade in place: starting a new process to take this node over")
    process = subprocess.Popen([*argv, "--take-over", path], stdin=subprocess.DEVNULL)

    def reap() -> None:
        code = process.wait()
        if code:
            log.warning("upgrade in place: the new process exited with %d; serving on", code)

    threading.Thread(target=reap, name="upgrade", daemon=True).start()


def _force_exit() -> None:
    log.warning("second signal: exiting without draining")
    os._exit(1)


def main(argv: Sequence[str] | None = None) -> int:
    apply_grpc_defaults()
    args = parse(build_parser(), argv)
    if args.command == "admin":
        from paradoxplex.admin.cli import run_admin

        return run_admin(args)
    if args.command == "cluster":
        from paradoxplex.node.cli.devfleet.command import run_cluster

        return run_cluster(args)
    if args.command == "health":
        from paradoxplex.node.cli.healthcheck import run_health

        return run_health(args)
    if args.command == "upstream-echo":
        return run_echo(args)
    try:
        config = node_config(args, dict(os.environ))
    except ConfigError as error:
        print(f"paradoxplex: {error}", file=sys.stderr)
        return 2
    raise_open_files()  # before --check, so that it reports what a node would have
    if args.check:
        from paradoxplex.node.cli.healthcheck import run_check

        return run_check(config, reach=args.check == "all")
    if config.workers > 1:
        from paradoxplex.node.cli.workers import run_workers, worker_config

        index = worker_index(dict(os.environ))
        if index is None:
            setup_logging(config.log_level, config.log_format, node_id=config.node_id)
            return run_workers(config, list(argv if argv is not None else sys.argv[1:]))
        config = worker_config(config, index)
    setup_logging(config.log_level, config.log_format, node_id=config.node_id)
    install_uvloop()
    try:
        asyncio.run(run_node(config))
    except ConfigError as error:
        print(f"paradoxplex: {error}", file=sys.stderr)
        return 2
    except HandoffRefused as error:
        print(f"paradoxplex: --take-over: {error}; the running node serves on", file=sys.stderr)
        return 2
    except HandoffError as error:
        print(f"paradoxplex: --take-over: {error}; the running node serves on", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"paradoxplex: cannot start: {error.strerror or error}", file=sys.stderr)
        return 1
    return 0


def run_echo(args: argparse.Namespace) -> int:
    setup_logging()
    try:
        address = parse_address("--listen", args.listen)
    except ConfigError as error:
        print(f"paradoxplex: {error}", file=sys.stderr)
        return 2
    from paradoxplex.node.cli.echo import echo_credentials, main_echo

    try:
        credentials = echo_credentials(args.tls_cert, args.tls_key, args.tls_client_ca)
    except ConfigError as error:
        print(f"paradoxplex: {error}", file=sys.stderr)
        return 2
    install_uvloop()
    try:
        with contextlib.suppress(KeyboardInterrupt):
            main_echo(
                str(address),
                broadcast_every=args.broadcast_every,
                batch=not args.original,
                credentials=credentials,
                grace=args.grace,
                acks=not args.no_acks,
            )
    except OSError as error:
        print(f"paradoxplex upstream-echo: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
