"""A fleet sharded over three independent redis-servers (the session's ``redis_shards``).

What must hold: sessions spread over every shard within ±20 %; unregistering a node leaves
nothing on any shard; a node given another list of shards refuses to start, in one line; one
shard stopped for 3 s under cross-node traffic with numbered replies leaves the traffic whose
inboxes live on the other shards untouched (all of it arrives while the shard is still
stopped), and nothing is silently lost (arrived + counted == sent).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from paradoxplex.node.fleet.backends import build_backend
from paradoxplex.node.fleet.redis import RedisFleet
from paradoxplex.node.node import Node
from paradoxplex.shared.config import NodeConfig
from paradoxplex.shared.errors import ConfigError
from paradoxplex.shared.keys import Keys
from paradoxplex.shared.sessions import SessionInfo
from tests.conftest import delete_prefix
from tests.integration.test_fleet_delivery import LOST_AT_SENDER, NUMBERED, drops
from tests.support.client import Client, close_all
from tests.support.eventually import eventually
from tests.support.fleet import accepted, start_fleet, start_upstream, stop_nodes
from tests.support.redis_server import RedisServer

SESSIONS = 3_000
SENT = 1_000
PER_TICK = 25
TICK = 0.02
#: Node ids whose inboxes fall on shards 0, 0, 1, 2 (jump hash of the id over 3 buckets).
IDS = ("a", "b", "e", "c")


def info(number: int, node_id: str = "node-a") -> SessionInfo:
    return SessionInfo(
        client_uuid=str(uuid.UUID(int=number * 2654435761 + 7, version=4)),
        node_id=node_id,
        remote=f"10.0.0.1:{1000 + number % 60000}",
        connected_at=1_700_000_000.0 + number,
    )


async def per_shard(servers: list[RedisServer], prefix: str) -> list[int]:
    """How many session rows each shard holds (only its own bucket's hash may hold any)."""
    keys = Keys(prefix, buckets=len(servers))
    counts = []
    for index, server in enumerate(servers):
        redis = Redis.from_url(server.url)
        try:
            others = [keys.sessions_data(b) for b in range(len(servers)) if b != index]
            assert not any([await redis.exists(key) for key in others])
            counts.append(int(await redis.hlen(keys.sessions_data(index))))
        finally:
            await redis.aclose()
    return counts


async def test_sessions_spread_over_every_shard(
    shards_fleet: RedisFleet, redis_shards: list[RedisServer], key_prefix: str
) -> None:
    await shards_fleet.register_sessions([info(n) for n in range(SESSIONS)])
    counts = await per_shard(redis_shards, key_prefix)
    assert sum(counts) == SESSIONS
    share = SESSIONS / len(redis_shards)
    assert all(0.8 * share <= count <= 1.2 * share for count in counts), counts
    assert len(await shards_fleet.node_sessions("node-a")) == SESSIONS


async def test_unregister_node_leaves_nothing_on_any_shard(
    shards_fleet: RedisFleet, redis_shards: list[RedisServer], key_prefix: str
) -> None:
    await shards_fleet.register_sessions([info(n) for n in range(1_200)])
    await shards_fleet.set_health("node-a", "10.0.0.1:45888", {"ready": True})
    await shards_fleet.set_health("node-b", "10.0.0.1:45888", {"ready": True})
    await shards_fleet.unregister_node("node-a")
    left: set[str] = set()
    for server in redis_shards:
        redis = Redis.from_url(server.url)
        try:
            left |= {key.decode() async for key in redis.scan_iter(match=f"{key_prefix}:*")}
        finally:
            await redis.aclose()
    keys = shards_fleet.keys
    assert left == {keys.health("10.0.0.1:45888"), keys.health_upstreams}


async def test_a_node_given_another_list_refuses_to_join(
    redis_shards: list[RedisServer], key_prefix: str
) -> None:
    urls = [server.url for server in redis_shards]
    first = await build_backend(NodeConfig(redis=",".join(urls), key_prefix=key_prefix))
    try:
        again = await build_backend(NodeConfig(redis=",".join(urls), key_prefix=key_prefix))
        await again.state.close()
        swapped = ",".join([urls[1], urls[0], urls[2]])
        with pytest.raises(ConfigError) as refused:
            await build_backend(NodeConfig(redis=swapped, key_prefix=key_prefix))
        assert refused.value.key == "--redis"
        assert "another list of shards" in str(refused.value)
        assert "\n" not in str(refused.value)
    finally:
        await first.state.close()
        await delete_prefix(",".join(urls), key_prefix)


# -- one shard stopped under traffic ---------------------------------------------------------


@pytest_asyncio.fixture
async def shard_servers() -> AsyncIterator[list[RedisServer]]:
    """Three shards of this test's own (one of them is stopped)."""
    servers = [RedisServer().start() for _ in range(3)]
    try:
        yield servers
    finally:
        for server in servers:
            server.close()


def numbers(client: Client) -> list[int]:
    return [int(n) for n in NUMBERED.findall(bytes(client.received))]


async def pump(sender: Node, owner: str, client_uuid: str) -> None:
    for start in range(0, SENT, PER_TICK):
        for n in range(start, min(start + PER_TICK, SENT)):
            await sender.outbox.forward(owner, client_uuid, b"<%d>" % n)
        await asyncio.sleep(TICK)  # the scenario: traffic spread over time


@pytest.mark.slow
async def test_one_shard_stopped_stops_only_its_own_traffic(
    shard_servers: list[RedisServer], key_prefix: str
) -> None:
    upstream_server, upstream = await start_upstream()
    url = ",".join(server.url for server in shard_servers)
    nodes: list[Node] = []
    clients: list[Client] = []
    try:
        nodes = await start_fleet(url, key_prefix, [upstream], ids=IDS, bus_hold=10.0)
        a, b, e, c = nodes
        keys = Keys(key_prefix, buckets=3)
        assert [keys.bucket(n.node_id) for n in (a, e, c)] == [0, 1, 2]
        owners = (a, e, c)
        clients = [await Client.connect(owner.listen_address, collect=True) for owner in owners]
        pairs = zip(owners, clients, strict=True)
        uuids = [await accepted(owner, client) for owner, client in pairs]
        stopped = shard_servers[1]  # e's inbox; not the designated shard
        loop = asyncio.get_running_loop()
        stopped.freeze()
        thaw_at = loop.time() + 3.0
        try:
            pumps = [
                pump(b, owner.node_id, uuid) for owner, uuid in zip(owners, uuids, strict=True)
            ]
            await asyncio.wait_for(asyncio.gather(*pumps[::2]), timeout=10)
            sending = asyncio.ensure_future(pumps[1])
            for client in (clients[0], clients[2]):  # a's and c's: other shards
                await eventually(
                    lambda client=client: len(numbers(client)) >= SENT,  # type: ignore[misc]
                    timeout=3,
                    message="replies through the other shards arrived while one is stopped",
                )
            await asyncio.sleep(max(0.0, thaw_at - loop.time()))  # the scenario: stopped 3 s
        finally:
            stopped.thaw()
        await sending
        await eventually(
            lambda: len(numbers(clients[1])) + e.bus.stats.lost + drops(b, *LOST_AT_SENDER) >= SENT,
            timeout=20,
            message="every reply through the stopped shard arrived or was counted",
        )
        for client in (clients[0], clients[2]):
            assert numbers(client) == list(range(SENT))
        got = numbers(clients[1])
        assert len(got) == len(set(got)), "a reply arrived twice"
        assert got == sorted(got), "replies out of order"
        counted = e.bus.stats.lost + drops(b, *LOST_AT_SENDER)
        assert len(got) + counted == SENT, (len(got), counted)
        assert (a.bus.stats.lost, c.bus.stats.lost) == (0, 0)
    finally:
        await close_all(clients)
        await stop_nodes(nodes)
        await upstream_server.stop(0)
