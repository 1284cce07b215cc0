"""The admin CLI's commands: one coroutine per sub-command, and where their results go.

Rules:
- A command takes the client, the parsed arguments and the ``Output``, calls the admin API
  and returns the exit code (``health``: 1 when not ready); errors propagate to the caller
  (``cli``), which prints them.
- Lists print aligned tables (``tables``), records ``key  value`` lines, actions one
  confirmation line; ``--json`` prints the API's JSON instead, one document on one line.
- An action passes ``--idempotency-key`` when given, else none (the client makes a fresh one).
- A payload is ``--text`` (``-n`` adds a newline), ``--base64`` (checked here) or ``--stdin``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

import orjson

from paradoxplex.admin.client import AdminClient
from paradoxplex.admin.inputs import decode_base64
from paradoxplex.admin.tables import (
    NODE_COLUMNS,
    SOCKET_COLUMNS,
    UPSTREAM_COLUMNS,
    Columns,
    render_fields,
    render_records,
    summarize_upstream,
)
from paradoxplex.shared.config import parse_address
from paradoxplex.shared.sessions import BroadcastTarget, parse_label, parse_state, parse_target


@dataclass(slots=True)
class Output:
    """Where and how results go: JSON for scripts or text for people."""

    json: bool = False
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)

    def data(self, data: Any, text: str) -> None:
        """``data`` as JSON with ``--json``, else ``text``."""
        if self.json:
            self.out.write(orjson.dumps(data).decode() + "\n")
        elif text:
            self.out.write(text + "\n")

    def listing(self, items: list[dict[str, Any]], cursor: str | None, columns: Columns) -> None:
        self.data({"items": items, "cursor": cursor}, render_records(items, columns))
        if cursor is not None and not self.json:
            self.err.write(f"more: pass --cursor {cursor} (or --all)\n")

    def error(self, code: str, message: str) -> int:
        self.err.write(f"error: {code}: {message}\n")
        return 1


Command = Callable[[AdminClient, argparse.Namespace, Output], Awaitable[int]]


async def _nodes(client: AdminClient, args: argparse.Namespace, out: Output) -> int:
    out.listing(await client.list_nodes(), None, NODE_COLUMNS)
    return 0


async def _sockets(client: AdminClient, args: argparse.Namespace, out: Output) -> int:
    state = parse_state(args.state).value if args.state else None
    filters = {"node": args.node, "state": state, "label": args.label, "limit": args.limit}
    if args.all:
        items = [item async for item in client.iter_sockets(**filters)]
        out.listing(items, None, SOCKET_COLUMNS)
    else:
        page = await client.list_sockets(**filters, cursor=args.cursor)
        out.listing(page.items, page.cursor, SOCKET_COLUMNS)
    return 0


async def _socket(client: AdminClient, args: argparse.Namespace, out: Output) -> int:
    record = await client.get_socket(args.uuid)
    out.data(record, render_fields(record))
    return 0


def _payload(args: argparse.Namespace) -> str | bytes:
    """The payload named by --text, --base64 (checked here) or --stdin (read to the end)."""
    if args.text is not None:
        return str(args.text) + ("\n" if getattr(args, "newline", False) else "")
    if args.base64 is not None:
        return decode_base64(args.base64)
    return sys.stdin.buffer.read()


def _key(args: argparse.Namespace) -> str | None:
    """--idempotency-key, else None (the client makes a fresh one)."""
    return getattr(args, "idempotency_key", None)


async def _send(client: AdminClient, args: argparse.Namespace, out: Output) -> int:
    payload = _payload(args)
    await client.send(args.uuid, payload, key=_key(args))
    size = len(payload.encode() if isinstance(payload, str) else payload)
    out.data({"ok": True}, f"sent {size} bytes to {args.uuid}")
    return 0


async def _pause(client: AdminClient, args: argparse.Namespace, out: Output) -> int:
    await client.pause(args.uuid, key=_key(args))
    out.data({"ok": True}, f"paused {args.uuid}")
    return 0


async def _resume(client: AdminClient, args: argparse.Namespace, out: Output) -> int:
    await client.resume(args.uuid, key=_key(args))
    out.data({"ok": True}, f"resumed {args.uuid}")
    return 0


async def _labels(client: AdminClient, args: argparse.Namespace, out: Output) -> int:
    labels = dict(parse_label(pair) for pair in args.labels)
    await client.set_labels(args.uuid, labels, key=_key(args))
    shown = ",".join(f"{key}={value}" for key, value in labels.items()) or "(none)"
    out.data({"ok": True}, f"labels of {args.uuid}: {shown}")
    return 0


async def _close(client: AdminClient, args: argparse.Namespace, out: Output) -> int:
    await client.close_socket(args.uuid, key=_key(args))
    out.data({"ok": True}, f"closed {args.uuid}")
    return 0


async def _broadcast(client: AdminClient, args: argparse.Namespace, out: Output) -> int:
    if args.label is not None:
        parse_label(args.label)
    target = parse_target(args.target)  # the API takes inactive too; paused is its word
    delivered = await client.broadcast(
        target.value, _payload(args), label=args.label, key=_key(args)
    )
    state = None if target is BroadcastTarget.ALL else target.value
    matched = 0
    async for _ in client.iter_sockets(state=state, label=args.label, limit=1000):
        matched += 1
    out.data(
        {"delivered_local": delivered, "matched_fleet": matched},
        f"broadcast to {matched} matching sockets fleet-wide ({delivered} on this node)",
    )
    return 0


async def _upstreams(client: AdminClient, args: argparse.Namespace, out: Output) -> int:
    items = await client.list_upstreams()
    if out.json:
        out.listing(items, None, UPSTREAM_COLUMNS)
    else:
        out.listing([summarize_upstream(item) for item in items], None, UPSTREAM_COLUMNS)
    return 0


async def _upstream_add(client: AdminClient, args: argparse.Namespace, out: Output) -> int:
    address = parse_address("upstream", args.address)
    record = await client.add_upstream(
        address.host,
        address.port,
        ready_timeout=args.ready_timeout,
        alive_timeout=args.alive_timeout,
        tls=args.tls,
        server_name=args.server_name,
        key=_key(args),
    )
    out.data(record, render_fields(record))
    return 0


async def _upstream_remove(client: AdminClient, args: argparse.Namespace, out: Output) -> int:
    await client.remove_upstream(args.id, key=_key(args))
    out.data({"ok": True}, f"removed upstream {args.id}")
    return 0


async def _upstream_drain(client: AdminClient, args: argparse.Namespace, out: Output) -> int:
    record = await client.drain_upstream(args.id, key=_key(args))
    out.data(record, render_fields(record))
    return 0


async def _drain(client: AdminClient, args: argparse.Namespace, out: Output) -> int:
    record = await client.drain_node(args.node_id, key=_key(args))
    out.data(record, render_fields(record))
    return 0


async def _health(client: AdminClient, args: argparse.Namespace, out: Output) -> int:
    live = await client.livez()
    ready = await client.readyz()
    text = render_fields({"live": live.get("status"), **ready})
    out.data({"live": live, "ready": ready}, text)
    return 0 if ready.get("ready") is True else 1


COMMANDS: dict[str, Command] = {
    "nodes": _nodes,
    "sockets": _sockets,
    "socket": _socket,
    "send": _send,
    "pause": _pause,
    "resume": _resume,
    "labels": _labels,
    "close": _close,
    "broadcast": _broadcast,
    "upstreams": _upstreams,
    "upstream-add": _upstream_add,
    "upstream-remove": _upstream_remove,
    "upstream-drain": _upstream_drain,
    "drain": _drain,
    "health": _health,
}
