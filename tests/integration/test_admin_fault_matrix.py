"""Admin actions under faults tell the truth and act once: the fault matrix.

Every test sends numbered payloads to live sockets through the admin API, each with its own
idempotency key (``tests.support.keyed_sends``), while one fault strikes: one of three shards
SIGSTOPped for 3 s, a Redis Cluster master SIGKILLed, Redis killed and restarted empty, the
owner node SIGSTOPped, the owner node SIGKILLed and started again under its id. Half the
sends are retried on 503, 504, 409 (and no answer) with the same key, as a client would,
for up to 15 s; the other half are sent once. What must hold, counted at the sockets:

- every retried send to a socket alive throughout arrives exactly once;
- nothing arrives twice;
- a send whose answer was ``not_applied`` never arrives (it is not retried, or it was the
  last answer);
- an answer 200 arrived; no 404 for a socket that was alive.

The counts per fault are printed (``-s``) and go in the closing note of issue 20.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from redis import Redis
from redis.crc import key_slot

from paradoxplex.node.node import Node
from paradoxplex.shared.config import Address
from paradoxplex.shared.keys import Keys
from paradoxplex.shared.placement import CLUSTER_BUCKETS
from tests.support.client import Client, close_all
from tests.support.eventually import eventually
from tests.support.fleet import (
    Admin,
    NodeProc,
    Proc,
    accepted,
    echo_address,
    registered,
    spawn_echo,
    spawn_node,
    start_fleet,
    stop_all,
    stop_nodes,
)
from tests.support.keyed_sends import KeyedSends, Tally, arrived
from tests.support.redis_cluster import ClusterServers
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.slow

SENDS = 120
PER_SECOND = 20
#: After the last answer: how long a command held in a stopped Redis may take to land.
SETTLE = 4.0


async def drive(
    sends: KeyedSends,
    uuids: Sequence[str],
    fault: Callable[[], Coroutine[Any, Any, None]],
    *,
    count: int = SENDS,
    rate: float = PER_SECOND,
) -> None:
    """``count`` numbered sends spread over the sockets, ``rate`` a second, the fault
    starting a quarter in; every other round of sockets is sent once only."""
    sending: list[asyncio.Task[object]] = []
    trouble: asyncio.Task[None] | None = None
    for n in range(count):
        if n == count // 4:
            trouble = asyncio.create_task(fault())
        retry = (n // len(uuids)) % 2 == 0
        sending.append(asyncio.create_task(sends.send(n, uuids[n % len(uuids)], retry=retry)))
        await asyncio.sleep(1 / rate)  # the scenario: a steady stream of sends
    await asyncio.gather(*sending)
    assert trouble is not None
    await trouble


async def settle(sends: KeyedSends, clients: Sequence[Client]) -> None:
    """Every answer 200 arrived, then a while for anything late to show."""
    ok = {n for n, sent in sends.sent.items() if any(a.status == 200 for a in sent.attempts)}
    await eventually(lambda: set(arrived(clients)) >= ok, timeout=15, message="every 200 arrived")
    await asyncio.sleep(SETTLE)  # the scenario: a late action would show by now


def judge(fault: str, sends: KeyedSends, clients: Sequence[Client], live: set[str]) -> Tally:
    tally = Tally.of(sends.sent.values(), arrived(clients), live=live)
    print(f"\n{tally.summary(fault)}")
    assert tally.problems_found == [], "\n".join(tally.problems_found[:20])
    return tally


async def sockets_on(
    node: Node, count: int, everyone: Sequence[Node]
) -> tuple[list[Client], list[str]]:
    clients = [await Client.connect(node.listen_address, collect=True) for _ in range(count)]
    uuids = [await accepted(node, client) for client in clients]
    for uuid in uuids:
        for other in everyone:
            await eventually(lambda: registered(other, uuid), message="registered")  # noqa: B023
    return clients, uuids


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


# -- Redis faults, in-process nodes --------------------------------------------------------


@pytest.fixture
def shards() -> Iterator[list[RedisServer]]:
    servers = [RedisServer().start() for _ in range(3)]
    try:
        yield servers
    finally:
        for server in servers:
            server.close()


async def test_one_of_three_shards_stopped(
    shards: list[RedisServer], upstream: Address, key_prefix: str, http: aiohttp.ClientSession
) -> None:
    url = ",".join(server.url for server in shards)
    nodes = await start_fleet(url, key_prefix, [upstream], ids=("a", "b", "e", "c"))
    a, b, e, c = nodes
    assert [Keys(key_prefix, buckets=3).bucket(n.node_id) for n in nodes] == [0, 0, 1, 2]
    clients: list[Client] = []
    try:
        uuids: list[str] = []
        for owner in (a, e, c):  # inboxes on shards 0, 1, 2; sessions on all three
            made, ids = await sockets_on(owner, 2, nodes)
            clients += made
            uuids += ids
        sends = KeyedSends([Admin(b.admin_url, http), Admin(e.admin_url, http)])
        stopped = shards[1]  # e's inbox (an asker and an owner), a third of the sessions

        async def stop_for_3_seconds() -> None:
            stopped.freeze()
            try:
                await asyncio.sleep(3.0)  # the scenario: the shard stopped for 3 s
            finally:
                stopped.thaw()

        await drive(sends, uuids, stop_for_3_seconds)
        await settle(sends, clients)
        judge("one of 3 shards SIGSTOPped 3 s", sends, clients, live=set(uuids))
    finally:
        shards[1].thaw()
        await close_all(clients)
        await stop_nodes(nodes)


@pytest.fixture
def failover_cluster() -> Iterator[ClusterServers]:
    with ClusterServers(masters=3, replicas=1, node_timeout_ms=1000) as cluster:
        yield cluster


def master_of(cluster: ClusterServers, key: str) -> RedisServer:
    """The live server that is master of ``key``'s slot now, as the cluster says."""
    slot = key_slot(key.encode())
    seed = cluster.live()[0]
    with Redis(host=seed.host, port=seed.port) as client:
        for start, end, master, *_ in client.execute_command("CLUSTER", "SLOTS"):
            if start <= slot <= end:
                port = int(master[1])
    return next(server for server in cluster.servers if server.port == port)


async def test_a_cluster_master_killed(
    failover_cluster: ClusterServers,
    upstream: Address,
    key_prefix: str,
    http: aiohttp.ClientSession,
) -> None:
    nodes = await start_fleet(failover_cluster.url, key_prefix, [upstream], bus_hold=15.0)
    a, b, c = nodes
    clients: list[Client] = []
    try:
        uuids: list[str] = []
        for owner in (a, c):
            made, ids = await sockets_on(owner, 3, nodes)
            clients += made
            uuids += ids
        victim = master_of(failover_cluster, Keys(key_prefix, buckets=CLUSTER_BUCKETS).inbox("a"))
        sends = KeyedSends([Admin(b.admin_url, http), Admin(c.admin_url, http)])

        async def kill_the_master() -> None:
            victim.kill()

        await drive(sends, uuids, kill_the_master)
        await settle(sends, clients)
        judge("a Cluster master SIGKILLed", sends, clients, live=set(uuids))
    finally:
        await close_all(clients)
        await stop_nodes(nodes)


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with RedisServer() as redis_server:
        yield redis_server


async def test_redis_killed_and_restarted_empty(
    server: RedisServer, upstream: Address, key_prefix: str, http: aiohttp.ClientSession
) -> None:
    nodes = await start_fleet(server.url, key_prefix, [upstream], ids=("a", "b"))
    a, b = nodes
    clients: list[Client] = []
    try:
        clients, uuids = await sockets_on(a, 5, nodes)
        sends = KeyedSends([Admin(b.admin_url, http)])

        async def restart_empty() -> None:
            await asyncio.to_thread(server.kill)
            await asyncio.to_thread(server.start)  # same port, empty

        await drive(sends, uuids, restart_empty, count=300, rate=100)
        await settle(sends, clients)
        judge("Redis SIGKILLed and restarted empty", sends, clients, live=set(uuids))
    finally:
        await close_all(clients)
        await stop_nodes(nodes)


# -- the owner node, a process -------------------------------------------------------------


@pytest_asyncio.fixture
async def echo() -> AsyncIterator[str]:
    proc = spawn_echo()
    try:
        yield await echo_address(proc)
    finally:
        stop_all([proc])


async def node_procs(url: str, prefix: str, echo: str, ids: Sequence[str]) -> list[NodeProc]:
    procs = [spawn_node(url, prefix, node_id, [echo]) for node_id in ids]
    return [await proc.started() for proc in procs]


async def uuids_of(admin: Admin, clients: Sequence[Client]) -> list[str]:
    return [await admin.uuid_of(client, timeout=10) for client in clients]


async def test_the_owner_node_stopped(
    redis_url: str, key_prefix: str, echo: str, http: aiohttp.ClientSession
) -> None:
    procs: list[Proc] = []
    clients: list[Client] = []
    try:
        owner, asker, other = await node_procs(redis_url, key_prefix, echo, ("own", "ask", "other"))
        procs += (owner, asker, other)
        clients = [await Client.connect(proc.listen, collect=True) for proc in (owner,) * 3]
        clients += [await Client.connect(other.listen, collect=True) for _ in range(3)]
        admin = Admin(asker.admin_url, http)
        uuids = await uuids_of(admin, clients)
        sends = KeyedSends([admin, Admin(other.admin_url, http)])

        async def stop_for_2_seconds() -> None:
            owner.signal(signal.SIGSTOP)
            try:
                await asyncio.sleep(2.0)  # the scenario: under node_ttl (3 s), it lives on
            finally:
                owner.signal(signal.SIGCONT)

        await drive(sends, uuids, stop_for_2_seconds)
        await settle(sends, clients)
        judge("the owner node SIGSTOPped 2 s", sends, clients, live=set(uuids))
    finally:
        for proc in procs:
            proc.signal(signal.SIGCONT)
        await close_all(clients)
        stop_all(procs)


async def test_the_owner_node_killed_and_started_again_under_its_id(
    redis_url: str, key_prefix: str, echo: str, http: aiohttp.ClientSession
) -> None:
    procs: list[Proc] = []
    clients: list[Client] = []
    try:
        owner, asker, other = await node_procs(redis_url, key_prefix, echo, ("own", "ask", "other"))
        procs += (owner, asker, other)
        doomed = [await Client.connect(owner.listen, collect=True) for _ in range(3)]
        alive = [await Client.connect(other.listen, collect=True) for _ in range(3)]
        clients = doomed + alive
        admin = Admin(asker.admin_url, http)
        uuids = await uuids_of(admin, clients)
        sends = KeyedSends([admin, Admin(other.admin_url, http)], budget=10.0)

        async def kill_and_restart() -> None:
            owner.kill()
            await asyncio.sleep(1.0)  # the scenario: a supervisor restarts it a second later
            procs.append(await spawn_node(redis_url, key_prefix, "own", [echo]).started())

        await drive(sends, uuids, kill_and_restart)
        await settle(sends, clients)
        survivors = set(uuids[3:])
        tally = Tally.of(sends.sent.values(), arrived(clients), live=survivors)
        print(f"\n{tally.summary('the owner node SIGKILLed, restarted under its id')}")
        assert tally.problems_found == [], "\n".join(tally.problems_found[:20])
    finally:
        await close_all(clients)
        stop_all(procs)
