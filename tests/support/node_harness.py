"""In-process nodes, upstreams and TCP clients on 127.0.0.1, port 0, for integration tests.

- ``Recorder``: an upstream handler that records every message and echoes socket data.
- ``start_upstream``: a real gRPC upstream (the SDK's ``UpstreamServer``) on a free port.
- ``running_node``: a ``Node`` with the given upstreams, started, ready, stopped afterwards
  (``drain_grace`` 0 unless told otherwise, so stopping does not wait for open sockets).
- Clients of a node's listener are ``tests.support.client.Client``s.
- ``sample``: a metric's value from the node's own Prometheus registry; a series that is not
  exported raises ``NoSuchSeries`` naming the ones that are (``tests.support.metric_series``).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from paradoxplex.node.fleet.memory import memory_backend
from paradoxplex.node.node import Node
from paradoxplex.node.sockets.session import Session
from paradoxplex.shared.config import Address, NodeConfig
from paradoxplex.upstream import Message, Outbox, UpstreamServer
from tests.support.client import Client
from tests.support.eventually import eventually
from tests.support.metric_series import registry_samples, value_of

ReplyRule = Callable[[Message, Outbox], bool]


@dataclass
class Recorder:
    """Records each message; echoes socket data unless ``echo`` is off or ``rule`` answered.

    ``rule(message, out)`` may answer in its own way and return True to skip the echo.
    """

    echo: bool = True
    rule: ReplyRule | None = None
    messages: list[Message] = field(default_factory=list)

    def __call__(self, message: Message, out: Outbox) -> None:
        self.messages.append(message)
        if message.event:
            return
        if self.rule is not None and self.rule(message, out):
            return
        if self.echo:
            out.reply(message.client_uuid, message.payload)

    @property
    def data(self) -> list[bytes]:
        """Payloads of data messages, in arrival order."""
        return [m.payload for m in self.messages if not m.event]

    @property
    def events(self) -> list[Message]:
        return [m for m in self.messages if m.event]

    def __repr__(self) -> str:
        return f"<Recorder messages={len(self.messages)} events={len(self.events)}>"


async def start_upstream(
    handler: Recorder | None = None, *, batch: bool = True, port: int = 0
) -> tuple[UpstreamServer, Recorder]:
    """An upstream on 127.0.0.1 (``port`` 0: a free one); stop it with ``await server.stop(0)``."""
    recorder = handler if handler is not None else Recorder()
    server = UpstreamServer(recorder, batch=batch)
    await server.start(f"127.0.0.1:{port}")
    return server, recorder


def node_config(upstream_ports: tuple[int, ...], **overrides: Any) -> NodeConfig:
    settings: dict[str, Any] = {
        "listen": Address("127.0.0.1", 0),
        "admin": Address("127.0.0.1", 0),
        "upstream": tuple(Address("127.0.0.1", port) for port in upstream_ports),
        "node_id": "test-node",
        "drain_grace": 0.0,
        "ready_timeout": 2.0,
        "alive_timeout": 5.0,
    }
    settings.update(overrides)
    return NodeConfig(**settings)


@contextlib.asynccontextmanager
async def running_node(
    *upstream_ports: int, wait_ready: bool = True, **overrides: Any
) -> AsyncIterator[Node]:
    """A started node; with ``wait_ready``, every upstream is in rotation before it is yielded."""
    node = Node(node_config(upstream_ports, **overrides), memory_backend())
    await node.start()
    try:
        if wait_ready:
            await eventually(
                lambda: len(node.pool.balancer_members()) == len(upstream_ports),
                message="every upstream in rotation",
            )
        yield node
    finally:
        await node.stop()


def listen_port(node: Node) -> int:
    return int(node.listen_address.rsplit(":", 1)[1])


def sample(node: Node, name: str, **labels: str) -> float:
    """A sample of the node's metrics: ``sample(node, "paradoxplex_drops_total", reason=...)``;
    ``NoSuchSeries`` (naming the series of ``name`` that exist) when it is not exported."""
    return value_of(registry_samples(node.metrics.registry), name, **labels)


def upstream_id(port: int) -> str:
    return f"127.0.0.1:{port}"


def session_of(node: Node, client: Client) -> Session:
    """The node's session for ``client`` (by the client's address)."""
    wanted = client.remote_as_node_sees_it
    for session in node.sessions.values():
        if session.info is not None and session.info.remote == wanted:
            return session
    raise LookupError(f"no session for {wanted}")


async def session_uuid(node: Node, client: Client) -> str:
    """The UUID the node gave ``client``'s socket, once the node has accepted it."""
    found: list[str] = []

    def accepted() -> bool:
        found[:] = [session_of(node, client).client_uuid]
        return True

    await eventually(accepted, message=f"the node accepted {client!r}")
    return found[0]


@contextlib.asynccontextmanager
async def clients(node: Node, count: int) -> AsyncIterator[list[Client]]:
    """``count`` connected clients, closed afterwards."""
    opened: list[Client] = []
    try:
        for _ in range(count):
            opened.append(await Client.connect(node))
        yield opened
    finally:
        for client in opened:
            await client.aclose()
