"""Cross-node delivery under Redis trouble, counted reply by reply (a redis-server of each
test's own, real nodes and sockets).

Node ``b`` forwards numbered replies ``<n>`` (its real courier and bus) to a socket that node
``a`` holds, while Redis is paused, has its connections killed, or is restarted empty. The
client counts what it got; the nodes count what they lost (``a``'s bus gaps, ``b``'s drops).
What must hold: paused or killed connections lose nothing and duplicate nothing, order
kept; an empty restart may lose, but arrived + counted == sent and nothing arrives twice.
Broadcasts: each node applies each broadcast exactly once across a connection kill.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from paradoxplex.node.fleet.redis import RedisBus
from paradoxplex.node.node import Node
from paradoxplex.shared.config import Address
from paradoxplex.shared.sessions import BroadcastTarget
from tests.support.client import Client, close_all
from tests.support.eventually import eventually
from tests.support.fleet import accepted, start_fleet, stop_nodes
from tests.support.node_harness import sample
from tests.support.redis_server import RedisServer

NUMBERED = re.compile(rb"<(\d+)>")
SENT = 1_500
PER_TICK = 25
TICK = 0.02  # 1,500 replies over about 1.2 s of sending, plus the trouble


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with RedisServer() as redis_server:
        yield redis_server


Fleet = tuple[list[Node], list[Client]]


@pytest_asyncio.fixture
async def fleet(server: RedisServer, upstream: Address, key_prefix: str) -> AsyncIterator[Fleet]:
    """Nodes a, b, c; one client on each of a and c."""
    nodes: list[Node] = []
    clients: list[Client] = []
    try:
        nodes = await start_fleet(server.url, key_prefix, [upstream], bus_hold=10.0)
        clients = [
            await Client.connect(nodes[0].listen_address, collect=True),
            await Client.connect(nodes[2].listen_address, collect=True),
        ]
        yield nodes, clients
    finally:
        await close_all(clients)
        await stop_nodes(nodes)


def numbers(client: Client) -> list[int]:
    return [int(n) for n in NUMBERED.findall(bytes(client.received))]


def drops(node: Node, *reasons: str) -> int:
    return sum(int(sample(node, "paradoxplex_drops_total", reason=reason)) for reason in reasons)


LOST_AT_SENDER = ("bus_hold_expired", "bus_hold_full", "owner_unreachable")


async def pump(sender: Node, owner: str, client_uuid: str, trouble: Awaitable[None]) -> None:
    """Forward SENT numbered replies from ``sender``, and cause ``trouble`` a third of the way."""
    trouble_task: asyncio.Task[None] | None = None
    for start in range(0, SENT, PER_TICK):
        if start >= SENT // 3 and trouble_task is None:
            trouble_task = asyncio.ensure_future(trouble)
        for n in range(start, min(start + PER_TICK, SENT)):
            await sender.outbox.forward(owner, client_uuid, b"<%d>" % n)
        await asyncio.sleep(TICK)  # the scenario: traffic spread over time
    assert trouble_task is not None
    await trouble_task


async def settle(client: Client, expected: Callable[[], int]) -> None:
    """Wait until the client got what is expected (arrived + counted as lost == sent)."""
    await eventually(
        lambda: len(numbers(client)) + expected() >= SENT,
        timeout=20,
        interval=0.05,
        message=f"every reply arrived or counted ({len(numbers(client))} arrived)",
    )


async def client_kill(url: str) -> None:
    redis = Redis.from_url(url)
    try:
        for kind in ("pubsub", "normal"):
            await redis.client_kill_filter(_type=kind, skipme=True)
    finally:
        await redis.aclose()


async def pause(server: RedisServer, seconds: float) -> None:
    server.freeze()
    try:
        await asyncio.sleep(seconds)  # the scenario: Redis paused this long
    finally:
        server.thaw()


@pytest.mark.slow
async def test_a_paused_redis_loses_nothing(server: RedisServer, fleet: Fleet) -> None:
    (a, b, _), (client, _) = fleet
    uuid = await accepted(a, client)
    await pump(b, "a", uuid, pause(server, 3.0))
    await settle(client, lambda: a.bus.stats.lost + drops(b, *LOST_AT_SENDER))
    assert numbers(client) == list(range(SENT))  # none lost, none twice, in order
    assert (a.bus.stats.gaps, a.bus.stats.lost, drops(b, *LOST_AT_SENDER)) == (0, 0, 0)


async def test_killed_connections_lose_nothing(server: RedisServer, fleet: Fleet) -> None:
    (a, b, _), (client, _) = fleet
    uuid = await accepted(a, client)

    async def kill_twice() -> None:
        await client_kill(server.url)
        await asyncio.sleep(0.2)  # the scenario: a second kill while traffic goes on
        await client_kill(server.url)

    await pump(b, "a", uuid, kill_twice())
    await settle(client, lambda: a.bus.stats.lost + drops(b, *LOST_AT_SENDER))
    assert numbers(client) == list(range(SENT))
    assert (a.bus.stats.gaps, drops(b, *LOST_AT_SENDER)) == (0, 0)
    assert isinstance(a.bus, RedisBus)
    assert a.bus.reconnects >= 1


async def test_an_empty_restart_counts_every_loss(server: RedisServer, fleet: Fleet) -> None:
    (a, b, _), (client, _) = fleet
    uuid = await accepted(a, client)

    async def restart() -> None:
        await asyncio.to_thread(server.kill)
        await asyncio.to_thread(server.start)  # same port, empty

    await pump(b, "a", uuid, restart())

    def counted() -> int:
        return a.bus.stats.lost + drops(b, *LOST_AT_SENDER)

    await settle(client, counted)
    got = numbers(client)
    assert len(got) == len(set(got)), "a reply arrived twice"
    assert got == sorted(got), "replies out of order"
    assert len(got) + counted() == SENT, (len(got), a.bus.stats, counted())
    print(f"\nempty restart: {len(got)} arrived, {counted()} counted lost ({a.bus.stats})")


async def test_each_broadcast_applies_once_across_a_connection_kill(
    server: RedisServer, fleet: Fleet
) -> None:
    (a, b, c), clients = fleet
    for node, client in zip((a, c), clients, strict=True):
        await accepted(node, client)
    total = 200
    for n in range(total):
        if n == total // 2:
            await client_kill(server.url)
        await b.outbox.publish_broadcast(BroadcastTarget.ALL, None, b"<%d>" % n)
    for client in clients:
        await eventually(
            lambda client=client: len(numbers(client)) >= total,  # type: ignore[misc]
            timeout=10,
            message="every broadcast arrived",
        )
    for client in clients:
        assert numbers(client) == list(range(total))
    assert a.bus.stats.lost == c.bus.stats.lost == 0
