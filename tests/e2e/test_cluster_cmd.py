"""``paradoxplex cluster``: a Redis, 3 nodes and 2 echo upstreams on loopback, one Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import uuid

import aiohttp
import pytest

from tests.support.client import Client
from tests.support.eventually import eventually
from tests.support.fleet import Admin, Proc, children_of, pid_gone
from tests.support.ports import free_range
from tests.support.processes import executable

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

UP_LINE = re.compile(rb"cluster up")


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as file:
            return file.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


async def test_cluster_runs_a_local_fleet_and_stops_it_all_on_sigint() -> None:
    listen = free_range(3)
    admin = free_range(3, avoid=range(listen, listen + 3))
    upstream = free_range(2, avoid=[*range(listen, listen + 3), *range(admin, admin + 3)])
    cluster = Proc(
        "cluster",
        [
            executable(), "cluster", "--nodes", "3", "--upstreams", "2",
            "--listen-base", str(listen + 2), "--admin-base", str(admin),
            "--upstream-base", str(upstream), "--prefix", f"pxtest-cluster-{uuid.uuid4().hex[:8]}",
        ],
    )  # fmt: skip
    children: list[int] = []
    client: Client | None = None
    try:
        await cluster.wait_line(UP_LINE, timeout=60)
        children = children_of(cluster.pid)
        assert len(children) == 6, children  # redis, 2 upstreams, 3 nodes
        printed = cluster.stdout().decode()
        assert re.search(r"redis\s+redis://127\.0\.0\.1:\d+/0", printed), printed
        for j in range(2):
            assert f"127.0.0.1:{upstream + j}" in printed
        for i in range(3):
            assert f"tcp 127.0.0.1:{listen + 2 - i}" in printed  # listeners count down
            assert f"admin http://127.0.0.1:{admin + i}" in printed
        [paste] = re.findall(r"^admin:\s+(PARADOXPLEX_ADMIN_URL=\S+ .*admin nodes)$", printed, re.M)
        assert paste.startswith(f"PARADOXPLEX_ADMIN_URL=http://127.0.0.1:{admin} ")
        # the line works as printed, in a shell whose PATH lacks the venv (as a new user's)
        shell = await asyncio.create_subprocess_exec(
            "bash",
            "-c",
            paste,
            env={"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp")},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(shell.communicate(), timeout=30)
        assert shell.returncode == 0, err.decode()
        assert b"node1" in out

        client = await Client.connect(f"127.0.0.1:{listen + 2}", collect=True)
        await client.round_trip(b"<hello node1>")
        async with aiohttp.ClientSession() as http:
            node2 = Admin(f"http://127.0.0.1:{admin + 1}", http)

            async def three() -> bool:
                return await node2.node_ids() == {"node1", "node2", "node3"}

            await eventually(three, timeout=10, message="node2 lists 3 nodes")
            assert (await node2.uuid_of(client)) in await node2.socket_uuids("node=node1")
        await client.aclose()

        # A node killed without warning: the others keep serving, it is named and restarted.
        [node2_pid] = [pid for pid in children if "node2" in cmdline(pid)]
        os.kill(node2_pid, signal.SIGKILL)
        await eventually(
            lambda: b"node2 (node) killed by SIGKILL; restarting it in 1s" in cluster.stderr(),
            timeout=10,
            message="the cluster says which member died",
        )
        client = await Client.connect(f"127.0.0.1:{listen + 2}", collect=True)
        await client.round_trip(b"<node1 still serves>")
        await client.aclose()
        await eventually(
            lambda: b"node2 restarted" in cluster.stderr(), timeout=10, message="node2 restarted"
        )
        async with aiohttp.ClientSession() as http:
            node1 = Admin(f"http://127.0.0.1:{admin}", http)

            async def node2_back() -> bool:
                return "node2" in await node1.node_ids()

            await eventually(node2_back, timeout=15, message="node2 back in the fleet")
        children = children_of(cluster.pid)
        assert cluster.popen.poll() is None

        before = len(cluster.stderr())
        cluster.signal(signal.SIGINT)
        assert await cluster.wait_exit(timeout=30) == 0, cluster.tail()
        await eventually(lambda: all(map(pid_gone, children)), timeout=5, message="no process left")
        # nodes stop first, so no node complains of its upstreams or Redis going away
        stopping = cluster.stderr()[before:].decode(errors="replace")
        assert "WARNING" not in stopping, stopping
        assert "ERROR" not in stopping, stopping
    finally:
        if client is not None:
            await client.aclose()
        cluster.kill()
        for pid in children:  # processes this test started (through the cluster), by pid
            if not pid_gone(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


#: ``--redis-mode`` → redis-servers it starts, and how the banner names them.
MODES = {
    "shards": (3, r"redis\d\s+redis://127\.0\.0\.1:\d+/0"),
    "cluster": (6, r"redis\s+redis\+cluster://(127\.0\.0\.1:\d+,){5}127\.0\.0\.1:\d+ "),
}


@pytest.mark.parametrize("mode", sorted(MODES))
async def test_cluster_in_a_redis_mode_runs_a_fleet_over_its_servers(mode: str) -> None:
    servers, banner = MODES[mode]
    listen = free_range(2)
    admin = free_range(2, avoid=range(listen, listen + 2))
    upstream = free_range(1, avoid=[*range(listen, listen + 2), *range(admin, admin + 2)])
    cluster = Proc(
        "cluster",
        [
            executable(), "cluster", "--nodes", "2", "--upstreams", "1", "--redis-mode", mode,
            "--listen-base", str(listen + 1), "--admin-base", str(admin),
            "--upstream-base", str(upstream), "--prefix", f"pxtest-{mode}-{uuid.uuid4().hex[:8]}",
        ],
    )  # fmt: skip
    client: Client | None = None
    try:
        await cluster.wait_line(UP_LINE, timeout=60)
        assert len(children_of(cluster.pid)) == servers + 3  # redis, 1 upstream, 2 nodes
        printed = cluster.stdout().decode()
        assert len(re.findall(banner, printed)) == (3 if mode == "shards" else 1), printed
        client = await Client.connect(f"127.0.0.1:{listen + 1}", collect=True)
        await client.round_trip(b"<hello %s>" % mode.encode())
        async with aiohttp.ClientSession() as http:
            node2 = Admin(f"http://127.0.0.1:{admin + 1}", http)

            async def both() -> bool:
                return await node2.node_ids() == {"node1", "node2"}

            await eventually(both, timeout=10, message="node2 lists 2 nodes")
            assert (await node2.uuid_of(client)) in await node2.socket_uuids("node=node1")
    finally:
        if client is not None:
            await client.aclose()
        cluster.signal(signal.SIGINT)
        await cluster.wait_exit(timeout=30)
