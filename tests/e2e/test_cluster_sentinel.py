"""``paradoxplex cluster --redis-mode sentinel``: a master, a replica, 3 sentinels, 1 echo
upstream and 2 nodes on loopback; the master SIGKILLed, the nodes follow the promoted
replica; one Ctrl-C stops everything."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import uuid

import aiohttp
import pytest
from redis.asyncio import Redis

from tests.e2e.test_cluster_cmd import UP_LINE, cmdline
from tests.support.client import Client
from tests.support.eventually import eventually
from tests.support.fleet import Admin, Proc, children_of, pid_gone
from tests.support.ports import free_range
from tests.support.processes import executable

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MASTER = re.compile(r"redis\s+master 127\.0\.0\.1:(\d+), replica 127\.0\.0\.1:(\d+)")
SENTINELS = re.compile(r"sentinels\s+(redis\+sentinel://(\S+)/paradoxplex/0)")


async def master_port(sentinel_port: int) -> int:
    async with Redis(port=sentinel_port, socket_timeout=2) as sentinel:
        found = await sentinel.sentinel_get_master_addr_by_name("paradoxplex")
        assert isinstance(found, tuple)
        return int(found[1])


async def test_the_sentinel_mode_follows_a_failover() -> None:
    listen = free_range(2)
    admin = free_range(2, avoid=range(listen, listen + 2))
    upstream = free_range(1, avoid=[*range(listen, listen + 2), *range(admin, admin + 2)])
    cluster = Proc(
        "cluster",
        [
            executable(), "cluster", "--redis-mode", "sentinel", "--nodes", "2",
            "--upstreams", "1", "--listen-base", str(listen + 1), "--admin-base", str(admin),
            "--upstream-base", str(upstream), "--prefix", f"pxtest-sentinel-{uuid.uuid4().hex[:8]}",
        ],
    )  # fmt: skip
    children: list[int] = []
    client: Client | None = None
    try:
        await cluster.wait_line(UP_LINE, timeout=60)
        children = children_of(cluster.pid)
        assert len(children) == 8, children  # master, replica, 3 sentinels, upstream, 2 nodes
        printed = cluster.stdout().decode()
        found_master, found_sentinels = MASTER.search(printed), SENTINELS.search(printed)
        assert found_master is not None, printed
        assert found_sentinels is not None, printed
        master = int(found_master.group(1))
        sentinel = int(found_sentinels.group(2).split(",")[0].rpartition(":")[2])
        assert f"--redis {found_sentinels.group(1)}" in " ".join(map(cmdline, children))

        client = await Client.connect(f"127.0.0.1:{listen + 1}", collect=True)
        await client.round_trip(b"<before>")
        [master_pid] = [p for p in children if cmdline(p).strip().endswith(f"127.0.0.1:{master}")]
        os.kill(master_pid, signal.SIGKILL)
        await eventually(
            lambda: (
                b"redis-master (redis) killed by SIGKILL; restarting it in 10s" in cluster.stderr()
            ),
            timeout=10,
            message="the cluster says the master died, and waits for the failover",
        )

        async def promoted() -> bool:
            return await master_port(sentinel) != master

        await eventually(promoted, timeout=20, message="the sentinels promote the replica")
        async with aiohttp.ClientSession() as http:
            node2 = Admin(f"http://127.0.0.1:{admin + 1}", http)

            async def follows() -> bool:  # node2 finds node1's socket on the new master
                return await node2.socket_uuids("node=node1") != set()

            await eventually(follows, timeout=10, message="node2 lists node1's socket again")
        await client.round_trip(b"<after>")
        await client.aclose()
        client = None

        cluster.signal(signal.SIGINT)
        assert await cluster.wait_exit(timeout=30) == 0, cluster.tail()
        await eventually(lambda: all(map(pid_gone, children)), timeout=5, message="none left")
    finally:
        if client is not None:
            await client.aclose()
        cluster.kill()
        for pid in children_of(cluster.pid) + children:  # started by this test, by pid
            if not pid_gone(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
