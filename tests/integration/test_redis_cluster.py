"""A fleet on Redis Cluster: sessions over the masters, and a master SIGKILLed under traffic.

The session's ``redis_cluster`` (3 masters) serves the spread; the failover test starts a
cluster of its own (3 masters + 3 replicas, ``cluster-node-timeout`` 1000 ms). Node ``b``
forwards numbered replies to a socket that node ``a`` holds; a third of the way, the master
holding ``a``'s inbox is SIGKILLed. What must hold: its replica is promoted and the fleet
recovers (the rest of the replies arrive, ``a``'s reader reconnected to the new master), and
every reply arrived exactly once, in order, or is counted as lost (``a``'s bus gaps, ``b``'s
drops): asynchronous replication may lose the last writes before the promotion.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
from redis import Redis

from paradoxplex.node.fleet.redis import RedisBus, RedisFleet
from paradoxplex.node.node import Node
from paradoxplex.shared.keys import Keys
from paradoxplex.shared.placement import CLUSTER_BUCKETS
from paradoxplex.shared.sessions import SessionInfo
from tests.integration.test_fleet_delivery import LOST_AT_SENDER, NUMBERED, drops
from tests.support.client import Client, close_all
from tests.support.eventually import eventually
from tests.support.fleet import accepted, start_fleet, start_upstream, stop_nodes
from tests.support.redis_cluster import ClusterServers
from tests.support.redis_server import RedisServer

SESSIONS = 3_000
SENT = 1_500
PER_TICK = 25
TICK = 0.02
#: A dead master is noticed after ``cluster-node-timeout`` (1 s here), then its replica waits
#: 0.5-1 s and asks the other masters' votes: a few seconds, with room for a loaded machine.
PROMOTION_TIMEOUT = 20.0


def master_of(cluster: ClusterServers, key: str) -> RedisServer:
    """The live server that is master of ``key``'s slot now, as every live node says."""
    master = cluster.master_of(key)
    assert master is not None, f"the cluster's nodes disagree on who holds {key!r}"
    return master


async def test_sessions_spread_over_every_master(
    cluster_fleet: RedisFleet, redis_cluster: ClusterServers
) -> None:
    sessions = [
        SessionInfo(str(uuid.UUID(int=n * 2654435761 + 7, version=4)), "node-a", "10.0.0.1:1", 0.0)
        for n in range(SESSIONS)
    ]
    await cluster_fleet.register_sessions(sessions)
    keys = Keys(cluster_fleet.keys.prefix, buckets=CLUSTER_BUCKETS)
    per_master: Counter[int] = Counter()
    for bucket in range(CLUSTER_BUCKETS):
        master = master_of(redis_cluster, keys.sessions_data(bucket))
        with Redis(host=master.host, port=master.port) as client:
            per_master[master.port] += int(client.hlen(keys.sessions_data(bucket)))
    assert sum(per_master.values()) == SESSIONS
    assert len(per_master) == 3, per_master
    assert min(per_master.values()) >= SESSIONS / 3 * 0.5, per_master
    assert len(await cluster_fleet.node_sessions("node-a")) == SESSIONS


@pytest.fixture
def failover_cluster() -> Iterator[ClusterServers]:
    with ClusterServers(masters=3, replicas=1, node_timeout_ms=1000) as cluster:
        yield cluster


@pytest_asyncio.fixture
async def fleet(
    failover_cluster: ClusterServers, key_prefix: str
) -> AsyncIterator[tuple[list[Node], Client]]:
    upstream_server, address = await start_upstream()
    nodes: list[Node] = []
    client: Client | None = None
    try:
        nodes = await start_fleet(failover_cluster.url, key_prefix, [address], bus_hold=15.0)
        client = await Client.connect(nodes[0].listen_address, collect=True)
        yield nodes, client
    finally:
        if client is not None:
            await close_all([client])
        await stop_nodes(nodes)
        await upstream_server.stop(0)


def numbers(client: Client) -> list[int]:
    return [int(n) for n in NUMBERED.findall(bytes(client.received))]


@pytest.mark.slow
async def test_a_killed_master_fails_over_and_every_reply_is_accounted_for(
    failover_cluster: ClusterServers, fleet: tuple[list[Node], Client], key_prefix: str
) -> None:
    (a, b, _), client = fleet
    session = await accepted(a, client)
    inbox = Keys(key_prefix, buckets=CLUSTER_BUCKETS).inbox("a")
    victim = master_of(failover_cluster, inbox)
    killed_at = 0.0
    for start in range(0, SENT, PER_TICK):
        if start == SENT // 3 // PER_TICK * PER_TICK:
            victim.kill()
            killed_at = time.monotonic()
        for n in range(start, min(start + PER_TICK, SENT)):
            await b.outbox.forward("a", session, b"<%d>" % n)
        await asyncio.sleep(TICK)  # the scenario: traffic spread over time

    def counted() -> int:
        return a.bus.stats.lost + drops(b, *LOST_AT_SENDER)

    def promoted() -> bool:  # every live node names a live master (so not the victim)
        return failover_cluster.master_of(inbox) not in (None, victim)

    try:
        await eventually(
            lambda: asyncio.to_thread(promoted),
            timeout=PROMOTION_TIMEOUT,
            interval=0.05,
            message=f"a replica promoted in place of the killed {victim}",
        )
    except AssertionError as exc:
        logs = {server.port: server.log_tail(300) for server in failover_cluster.live()}
        raise AssertionError(f"{exc}; the live nodes' logs: {logs}") from exc
    promoted_at = time.monotonic() - killed_at
    await eventually(
        lambda: len(numbers(client)) + counted() >= SENT,
        timeout=30,
        interval=0.05,
        message=f"every reply arrived or counted ({len(numbers(client))} arrived)",
    )
    recovered = time.monotonic() - killed_at
    master = master_of(failover_cluster, inbox)
    assert master is not victim
    assert master.running
    got = numbers(client)
    assert len(got) == len(set(got)), "a reply arrived twice"
    assert got == sorted(got), "replies out of order"
    assert len(got) + counted() == SENT, (len(got), a.bus.stats, counted())
    assert got[-1] == SENT - 1, "the fleet did not recover: the last replies never came"
    assert isinstance(a.bus, RedisBus)
    assert a.bus.reconnects >= 1
    print(
        f"\ncluster failover: {len(got)} arrived, {counted()} counted lost "
        f"({a.bus.stats}, drops at b {drops(b, *LOST_AT_SENDER)}), "
        f"promoted {promoted_at:.1f} s and all settled {recovered:.1f} s after the kill"
    )
