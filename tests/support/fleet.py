"""Helpers for fleet tests: TCP clients, an admin API caller, in-process fleets, processes.

- Downstream sockets are ``tests.support.client.Client``s, connected with ``collect=True``
  (they keep everything they receive; tests wait on it).
- ``Admin``: calls one node's admin API and answers ``(status, json)``, errors included.
- ``start_fleet``: N in-process nodes on one Redis prefix, with their upstreams ready.
- ``Proc`` / ``start_node`` / ``start_echo``: ``paradoxplex`` subprocesses whose start-up
  line is parsed; every one is killed by ``stop_all`` (call it in ``finally``).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from paradoxplex.node.cli.echo import Echo
from paradoxplex.node.fleet.backends import build_backend
from paradoxplex.node.node import Node
from paradoxplex.shared.config import Address, NodeConfig
from paradoxplex.upstream import Handler, Message, Outbox, UpstreamServer
from tests.support.client import Client
from tests.support.eventually import eventually
from tests.support.processes import environment, executable

PARADOXPLEX = executable()
NODE_LINE = re.compile(
    rb"paradoxplex node (?P<id>\S+) listening on (?P<listen>\S+), admin on (?P<admin>\S+)"
)
ECHO_LINE = re.compile(rb"upstream-echo listening on (?P<listen>\S+)")

# -- admin API -----------------------------------------------------------------------------


class Admin:
    """A node's admin API: ``call`` answers ``(status, decoded JSON or None)``."""

    def __init__(self, url: str, session: aiohttp.ClientSession) -> None:
        self.url = url.rstrip("/")
        self.session = session

    async def call(
        self, method: str, path: str, body: Any = None, *, key: str | None = None
    ) -> tuple[int, Any]:
        """``key``: sent as ``Idempotency-Key``."""
        status, data, _ = await self.exchange(method, path, body, key=key)
        return status, data

    async def exchange(
        self, method: str, path: str, body: Any = None, *, key: str | None = None
    ) -> tuple[int, Any, bool]:
        """``(status, decoded JSON or None, replayed)``: ``replayed`` is the answer's
        ``Idempotent-Replayed: true``."""
        data = None if body is None else orjson.dumps(body)
        headers = {"Content-Type": "application/json"} if data is not None else {}
        if key is not None:
            headers["Idempotency-Key"] = key
        async with self.session.request(
            method, self.url + path, data=data, headers=headers
        ) as answer:
            raw = await answer.read()
            replayed = answer.headers.get("Idempotent-Replayed") == "true"
            return answer.status, (orjson.loads(raw) if raw else None), replayed

    async def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, data = await self.call(method, path, body)
        assert 200 <= status < 300, f"{method} {path} -> {status} {data}"
        return data

    async def node_ids(self) -> set[str]:
        data = await self.ok("GET", "/v1/nodes")
        return {item["id"] for item in data["items"]}

    async def sockets(self, query: str = "") -> list[dict[str, Any]]:
        """Every page of ``GET /v1/sockets`` (``query`` without ``cursor``)."""
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            params = [query] if query else []
            if cursor:
                params.append(f"cursor={cursor}")
            page = await self.ok("GET", "/v1/sockets?" + "&".join(params))
            items += page["items"]
            cursor = page["cursor"]
            if not cursor:
                return items

    async def socket_uuids(self, query: str = "") -> set[str]:
        return {item["uuid"] for item in await self.sockets(query)}

    async def uuid_of(self, client: Client, *, timeout: float = 5.0) -> str:  # noqa: ASYNC109
        """The uuid of ``client``'s socket, once the fleet lists it (matched by address)."""
        found: list[str] = []

        async def listed() -> bool:
            found[:] = [s["uuid"] for s in await self.sockets() if s["remote"] == client.local]
            return len(found) == 1

        await eventually(listed, timeout=timeout, message=f"{client.local} listed by {self.url}")
        return found[0]


# -- in-process fleets ---------------------------------------------------------------------


class Tagged:
    """An echo that prefixes each reply with ``tag``: shows which upstream answered."""

    def __init__(self, tag: bytes) -> None:
        self.tag = tag
        self.messages = 0

    def __call__(self, message: Message, out: Outbox) -> None:
        if message.event:
            return
        self.messages += 1
        out.reply(message.client_uuid, self.tag + message.payload)


class Scripted:
    """``upstream-echo``'s handler, except that ``!bcast:<target>:<label>:<text>`` asks the
    upstream to broadcast ``<text>`` (target all/active/inactive, label ``k=v`` or empty),
    then to answer ``BCAST_ACK`` to the sender (see ``upstream_broadcast``)."""

    def __init__(self) -> None:
        self.echo = Echo()
        self.events: list[Message] = []

    def __call__(self, message: Message, out: Outbox) -> None:
        if message.event:
            self.events.append(message)
        elif message.payload.startswith(b"!bcast:"):
            _, target, label, text = message.payload.split(b":", 3)
            out.broadcast(text, target=target.decode(), label=label.decode())
            out.reply(message.client_uuid, BCAST_ACK)
            return
        self.echo(message, out)


BCAST_ACK = b"(bcast-ack)"


async def upstream_broadcast(
    client: Client, text: bytes, *, target: str = "all", label: str = ""
) -> None:
    """Have a ``Scripted`` upstream broadcast ``text``, through ``client``'s socket.

    Waits for the upstream's acknowledgement: two requests sent back to back could arrive
    as one read (raw framing), and be taken for one broadcast.
    """
    acks = client.count(BCAST_ACK)
    await client.send(b"!bcast:%s:%s:%s" % (target.encode(), label.encode(), text))
    await client.expect(BCAST_ACK, times=acks + 1)


async def start_upstream(handler: Handler | None = None) -> tuple[UpstreamServer, Address]:
    """An SDK upstream on a free port (``Scripted``, an extended upstream-echo, by default)."""
    server = UpstreamServer(handler if handler is not None else Scripted())
    port = await server.start("127.0.0.1:0")
    return server, Address("127.0.0.1", port)


def node_config(
    redis_url: str, prefix: str, node_id: str, upstreams: Sequence[Address], **extra: Any
) -> NodeConfig:
    settings: dict[str, Any] = {
        "listen": Address("127.0.0.1", 0),
        "admin": Address("127.0.0.1", 0),
        "upstream": tuple(upstreams),
        "redis": redis_url,
        "key_prefix": prefix,
        "node_id": node_id,
        "heartbeat": 0.5,
        "node_ttl": 3.0,
        "drain_grace": 0.0,
        "owner_timeout": 1.0,
        "ready_timeout": 2.0,
    }
    settings.update(extra)
    return NodeConfig(**settings)


async def start_fleet(
    redis_url: str,
    prefix: str,
    upstreams: Sequence[Address],
    *,
    ids: Sequence[str] = ("a", "b", "c"),
    **extra: Any,
) -> list[Node]:
    """Started nodes, each with every upstream ready (stop them with ``stop_nodes``)."""
    nodes: list[Node] = []
    try:
        for node_id in ids:
            config = node_config(redis_url, prefix, node_id, upstreams, **extra)
            node = Node(config, await build_backend(config))
            nodes.append(node)
            await node.start()
        await eventually(
            lambda: all(len(n.pool.balancer_members()) == len(upstreams) for n in nodes),
            timeout=10,
            message="every node's upstreams ready",
        )
    except BaseException:
        await stop_nodes(nodes)
        raise
    return nodes


async def stop_nodes(nodes: Iterable[Node]) -> None:
    await asyncio.gather(*(node.stop() for node in nodes), return_exceptions=True)


def client_on(node: Node, client: Client) -> str:
    """The uuid ``node`` gave ``client``'s socket (in-process: no fleet round trip)."""
    for uuid, session in node.sessions.items():
        if session.info is not None and session.info.remote == client.local:
            return uuid
    raise LookupError(f"{client.local} is not a socket of {node.node_id}")


async def accepted(node: Node, client: Client) -> str:
    """The uuid ``node`` gave ``client``'s socket, once the node has accepted it."""
    found: list[str] = []

    def holds() -> bool:
        with contextlib.suppress(LookupError):
            found.append(client_on(node, client))
        return bool(found)

    await eventually(holds, message=f"{client.local} accepted by {node.node_id}")
    return found[0]


async def registered(node: Node, uuid: str) -> bool:
    return await node.fleet.lookup_session(uuid) is not None


# -- processes -----------------------------------------------------------------------------


class Proc:
    """A subprocess whose stdout and stderr go to files, read back to parse and debug."""

    def __init__(self, name: str, command: Sequence[str], env: dict[str, str] | None = None):
        self.name = name
        self.dir = Path(tempfile.mkdtemp(prefix=f"paradoxplex-{name}-"))
        self.out_path = self.dir / "stdout"
        self.err_path = self.dir / "stderr"
        with self.out_path.open("wb") as out, self.err_path.open("wb") as err:
            self.popen = subprocess.Popen(
                list(command),
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                env=environment(**(env or {})),
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stdout(self) -> bytes:
        return self.out_path.read_bytes()

    def stderr(self) -> bytes:
        return self.err_path.read_bytes()

    async def wait_line(
        self,
        pattern: re.Pattern[bytes],
        *,
        count: int = 1,
        timeout: float = 20.0,  # noqa: ASYNC109
    ) -> list[re.Match[bytes]]:
        """The first ``count`` matches of ``pattern`` in stdout, once printed."""

        def printed() -> bool:
            if self.popen.poll() is not None:
                raise AssertionError(f"{self.name} exited {self.popen.returncode}: {self.tail()}")
            return len(pattern.findall(self.stdout())) >= count

        try:
            await eventually(printed, timeout=timeout, interval=0.05, message=f"{self.name} up")
        except AssertionError as error:
            raise AssertionError(f"{error}; stderr: {self.tail()}") from None
        return list(pattern.finditer(self.stdout()))[:count]

    def tail(self, size: int = 1500) -> str:
        return self.stderr()[-size:].decode(errors="replace")

    def signal(self, signum: int) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signum)

    async def wait_exit(self, timeout: float = 15.0) -> int:  # noqa: ASYNC109
        await eventually(
            lambda: self.popen.poll() is not None,
            timeout=timeout,
            interval=0.05,
            message=f"{self.name} to exit",
        )
        code = self.popen.returncode
        assert code is not None
        return code

    def kill(self) -> None:
        """SIGKILL if running (SIGCONT first: a stopped process dies either way), and reap."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGCONT)
            self.popen.kill()
        self.popen.wait()

    def __repr__(self) -> str:
        return f"<Proc {self.name} pid={self.pid} rc={self.popen.poll()}>"


class NodeProc(Proc):
    node_id = ""
    listen = ""
    admin_url = ""

    async def started(self, *, timeout: float = 20.0) -> NodeProc:  # noqa: ASYNC109
        (match,) = await self.wait_line(NODE_LINE, timeout=timeout)
        self.node_id = match["id"].decode()
        self.listen = match["listen"].decode()
        self.admin_url = match["admin"].decode()
        return self


def node_command(
    redis_url: str, prefix: str, node_id: str, upstreams: Sequence[str], *extra: str
) -> list[str]:
    command = [
        PARADOXPLEX, "node", "--redis", redis_url, "--key-prefix", prefix,
        "--node-id", node_id, "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
        "--heartbeat", "0.5", "--node-ttl", "3", "--drain-grace", "1",
    ]  # fmt: skip
    for upstream in upstreams:
        command += ["--upstream", upstream]
    return [*command, *extra]


def spawn_node(
    redis_url: str, prefix: str, node_id: str, upstreams: Sequence[str], *extra: str
) -> NodeProc:
    return NodeProc(node_id, node_command(redis_url, prefix, node_id, upstreams, *extra))


def spawn_echo(name: str = "echo") -> Proc:
    return Proc(name, [PARADOXPLEX, "upstream-echo", "--listen", "127.0.0.1:0"])


async def echo_address(proc: Proc) -> str:
    (match,) = await proc.wait_line(ECHO_LINE)
    return match["listen"].decode()


def stop_all(procs: Iterable[Proc]) -> None:
    for proc in procs:
        proc.kill()


def children_of(pid: int) -> list[int]:
    """The pids whose parent is ``pid`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def pid_gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (gone, or a zombie awaiting its reaper)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] in ("Z", "X")
