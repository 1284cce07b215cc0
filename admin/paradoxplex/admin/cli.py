"""``paradoxplex admin …``: the admin API from a shell.

Rules:
- ``--url`` (default ``$PARADOXPLEX_ADMIN_URL``, else ``http://127.0.0.1:8000``; ``http://``
  is added when no scheme is given), ``--token`` (default ``$PARADOXPLEX_ADMIN_TOKEN``),
  ``--ca`` (default ``$PARADOXPLEX_ADMIN_CA``: the PEM CA an ``https://`` admin API's
  certificate must chain to, else the system's CAs) and ``--json`` go before or after the
  sub-command.
- The sub-commands are ``commands.COMMANDS``: lists print aligned tables, records ``key  value``
  lines, actions one confirmation line; ``--json`` prints the API's JSON instead, one document
  on one line.
- Exit 0 on success. An error prints one line ``error: <code>: <message>`` to stderr and exits
  1; so does an unreachable node (code ``unreachable``). ``health`` exits 1 when not ready.
- Every action sends an ``Idempotency-Key`` (``--idempotency-key``, else a fresh one) and is
  tried again with it, quietly, while answered 503, 504 or 409 in progress (the client's
  rules). When it still fails, the line says the outcome; an ``unknown`` one names the key,
  to try again later without acting twice (within 10 minutes).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from paradoxplex.admin.client import DEFAULT_TIMEOUT, AdminAPIError, AdminClient, AdminUnreachable
from paradoxplex.admin.commands import COMMANDS, Output
from paradoxplex.admin.inputs import DEFAULT_LIMIT, MAX_LIMIT
from paradoxplex.shared.config import DEFAULT_ADMIN
from paradoxplex.shared.errors import ConfigError, InvalidRequest
from paradoxplex.shared.retry import ADMIN_ACTION

DEFAULT_URL = f"http://{DEFAULT_ADMIN}"
URL_ENV = "PARADOXPLEX_ADMIN_URL"
TOKEN_ENV = "PARADOXPLEX_ADMIN_TOKEN"
CA_ENV = "PARADOXPLEX_ADMIN_CA"
#: How actions are tried again (``retry.ADMIN_ACTION``).
ACTION_RETRY = ADMIN_ACTION

if TYPE_CHECKING:
    SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]


def _common_options() -> argparse.ArgumentParser:
    """--url, --token, --json; SUPPRESS defaults let them go before or after a sub-command."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--url",
        default=argparse.SUPPRESS,
        help=f"admin API URL (default ${URL_ENV}, else {DEFAULT_URL})",
    )
    common.add_argument(
        "--token", default=argparse.SUPPRESS, help=f"bearer token (default ${TOKEN_ENV})"
    )
    common.add_argument(
        "--ca",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help=f"PEM CA of an https:// admin API (default ${CA_ENV}, else the system's CAs)",
    )
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print raw JSON"
    )
    common.add_argument(
        "--idempotency-key",
        metavar="KEY",
        default=argparse.SUPPRESS,
        help="an action's Idempotency-Key (default: a fresh one per action); the same key "
        "within 10 minutes acts at most once",
    )
    return common


def _add_payload_options(parser: argparse.ArgumentParser, *, stdin: bool) -> None:
    parser.add_argument(
        "-n", "--newline", action="store_true", help="end the --text payload with a newline"
    )
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--text", help="payload text, sent as UTF-8")
    group.add_argument("--base64", help="payload bytes, base64-encoded")
    if stdin:
        group.add_argument("--stdin", action="store_true", help="payload bytes read from stdin")


def _add_socket_commands(commands: SubParsers, common: argparse.ArgumentParser) -> None:
    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        parser = commands.add_parser(name, parents=[common], help=help_text)
        parser.add_argument("uuid", metavar="UUID", help="socket id")
        return parser

    add("socket", "show one socket")
    _add_payload_options(add("send", "write a payload to a socket"), stdin=True)
    add("pause", "stop reading a socket")
    add("resume", "read a paused socket again")
    labels = add("labels", "replace a socket's labels (none given: clear them)")
    labels.add_argument("labels", nargs="*", metavar="KEY=VALUE")
    add("close", "close a socket")


def _add_list_commands(commands: SubParsers, common: argparse.ArgumentParser) -> None:
    commands.add_parser("nodes", parents=[common], help="list live nodes")
    sockets = commands.add_parser("sockets", parents=[common], help="list sockets fleet-wide")
    sockets.add_argument("--node", help="only sockets held by this node")
    sockets.add_argument(
        "--state", choices=("active", "paused", "inactive"), help="inactive is paused"
    )
    sockets.add_argument("--label", metavar="KEY=VALUE", help="only sockets with this label")
    sockets.add_argument(
        "--limit", type=int, help=f"page size (server default {DEFAULT_LIMIT}, max {MAX_LIMIT})"
    )
    sockets.add_argument("--cursor", help="the cursor a previous page printed")
    sockets.add_argument("--all", action="store_true", help="follow cursors to the last page")
    commands.add_parser("upstreams", parents=[common], help="list upstreams")
    commands.add_parser("health", parents=[common], help="livez and readyz (exit 1: not ready)")


def _add_fleet_commands(commands: SubParsers, common: argparse.ArgumentParser) -> None:
    broadcast = commands.add_parser("broadcast", parents=[common], help="write to many sockets")
    broadcast.add_argument(
        "target",
        choices=("all", "active", "paused", "inactive"),
        help="all, active, or paused sockets (inactive is paused)",
    )
    broadcast.add_argument("--label", metavar="KEY=VALUE", help="only sockets with this label")
    _add_payload_options(broadcast, stdin=False)
    add = commands.add_parser("upstream-add", parents=[common], help="register an upstream")
    add.add_argument("address", metavar="HOST:PORT")
    add.add_argument("--ready-timeout", type=float, metavar="SECONDS")
    add.add_argument("--alive-timeout", type=float, metavar="SECONDS")
    add.add_argument("--tls", action="store_true", help="reach it over TLS")
    add.add_argument(
        "--server-name", metavar="NAME", help="name its certificate is checked against"
    )
    for name, help_text in (
        ("upstream-remove", "remove an upstream fleet-wide"),
        ("upstream-drain", "stop new traffic to an upstream"),
    ):
        parser = commands.add_parser(name, parents=[common], help=help_text)
        parser.add_argument("id", metavar="ID", help="upstream id (HOST:PORT)")
    drain = commands.add_parser("drain", parents=[common], help="drain a node")
    drain.add_argument("node_id", metavar="NODE_ID")


def add_admin_parser(subparsers: SubParsers) -> None:
    """Add ``admin`` and its sub-commands; dispatch the parsed args to ``run_admin``."""
    common = _common_options()
    admin = subparsers.add_parser(
        "admin",
        parents=[common],
        help="the admin API's command-line client",
        description="Talk to a node's admin API; any node answers for the whole fleet.",
    )
    commands = admin.add_subparsers(dest="admin_command", metavar="COMMAND", required=True)
    _add_list_commands(commands, common)
    _add_socket_commands(commands, common)
    _add_fleet_commands(commands, common)


def admin_url(args: argparse.Namespace) -> str:
    """--url, else $PARADOXPLEX_ADMIN_URL, else the default; ``http://`` added if needed."""
    url = getattr(args, "url", None) or os.environ.get(URL_ENV) or DEFAULT_URL
    return url if "://" in url else f"http://{url}"


def admin_token(args: argparse.Namespace) -> str | None:
    """--token, else $PARADOXPLEX_ADMIN_TOKEN, else none."""
    return getattr(args, "token", None) or os.environ.get(TOKEN_ENV) or None


def admin_ca(args: argparse.Namespace) -> str | None:
    """--ca, else $PARADOXPLEX_ADMIN_CA, else none (the system's CAs)."""
    return getattr(args, "ca", None) or os.environ.get(CA_ENV) or None


async def _run(args: argparse.Namespace, out: Output) -> int:
    command = COMMANDS[args.admin_command]
    try:
        client = AdminClient(
            admin_url(args),
            admin_token(args),
            DEFAULT_TIMEOUT,
            ca=admin_ca(args),
            retry=ACTION_RETRY,
        )
        async with client:
            return await command(client, args, out)
    except AdminAPIError as error:
        hint = _token_hint(error.code, admin_token(args)) + _outcome_hint(error)
        return out.error(error.code, error.message + hint)
    except AdminUnreachable as error:
        return out.error("unreachable", f"{error.url}: {error.reason}")
    except (ConfigError, InvalidRequest, ValueError) as error:
        return out.error("bad_request", str(error))


def _outcome_hint(error: AdminAPIError) -> str:
    """What a 503 or 504 means for the action, and how to try again safely."""
    if error.outcome == "not_applied":
        return " (not applied: nothing happened)"
    if error.outcome == "unknown" and error.key is not None:
        return (
            " (outcome unknown: it may have happened; to try again without acting twice, "
            f"repeat it with --idempotency-key {error.key} within 10 minutes)"
        )
    return ""


def _token_hint(code: str, token: str | None) -> str:
    """What to do about a 401: where the token comes from, or that the one sent is wrong."""
    if code != "unauthorized":
        return ""
    if token is None:
        return f" (this admin API needs a token: pass --token or set {TOKEN_ENV})"
    return f" (the token given by --token or {TOKEN_ENV} is not the node's --admin-token)"


def run_admin(args: argparse.Namespace) -> int:
    """Run the parsed ``admin`` sub-command; returns the exit code (0 ok, 1 error)."""
    return asyncio.run(_run(args, Output(json=bool(getattr(args, "json", False)))))


def main(argv: Sequence[str] | None = None) -> int:
    """``paradoxplex admin`` on its own: ``main(["nodes"])`` is ``paradoxplex admin nodes``."""
    parser = argparse.ArgumentParser(prog="paradoxplex")
    add_admin_parser(parser.add_subparsers(dest="command", required=True))
    return run_admin(parser.parse_args(["admin", *(sys.argv[1:] if argv is None else argv)]))
