"""``paradoxplex cluster``: a Redis, 3 nodes and 2 echo upstreams on loopback, one Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import uuid
from collections.abc import Callable

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


async def incarnation(admin: Admin, node_id: str) -> str | None:
    items = (await admin.ok("GET", "/v1/nodes"))["items"]
    found = [item["incarnation"] for item in items if item["id"] == node_id]
    return found[0] if found else None


async def no_ghosts(admin: Admin, node_id: str, gone: set[str]) -> None:
    """``admin`` shows none of the ``gone`` sockets: listing, node filter, GET, node count."""
    assert not gone & await admin.socket_uuids(), admin.url
    assert not gone & await admin.socket_uuids(f"node={node_id}"), admin.url
    for socket in gone:
        status, _ = await admin.call("GET", f"/v1/sockets/{socket}")
        assert status == 404, (admin.url, socket, status)
    items = (await admin.ok("GET", "/v1/nodes"))["items"]
    assert [item["sockets"] for item in items if item["id"] == node_id] == [0], admin.url


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
    held_by_node2: list[Client] = []
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
        doomed: set[str] = set()
        async with aiohttp.ClientSession() as http:
            node1 = Admin(f"http://127.0.0.1:{admin}", http)
            for _ in range(2):
                held = await Client.connect(f"127.0.0.1:{listen + 1}", collect=True)
                await held.round_trip(b"<on node2>")
                doomed.add(await node1.uuid_of(held))
                held_by_node2.append(held)
            killed_incarnation = await incarnation(node1, "node2")
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

            # ... as a new incarnation, with no trace of the old one's sockets on any node
            async def new_incarnation() -> bool:
                return await incarnation(node1, "node2") != killed_incarnation

            await eventually(new_incarnation, timeout=15, message="node2's new incarnation")
            for url in (f"http://127.0.0.1:{admin + i}" for i in range(3)):
                await no_ghosts(Admin(url, http), "node2", doomed)
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
        for held in held_by_node2:
            await held.aclose()
        if cluster.popen.poll() is None:  # and those it started again since (a restarted node)
            children = sorted({*children, *children_of(cluster.pid)})
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


async def test_cluster_upgrades_every_node_in_place_on_sigusr1() -> None:
    """Each node in turn is taken over by a new process (``--take-over``): a socket on each
    keeps its conversation, the cluster names each upgrade, and no node is restarted."""
    listen = free_range(2)
    admin = free_range(2, avoid=range(listen, listen + 2))
    upstream = free_range(1, avoid=[*range(listen, listen + 2), *range(admin, admin + 2)])
    cluster = Proc(
        "cluster",
        [
            executable(), "cluster", "--nodes", "2", "--upstreams", "1",
            "--listen-base", str(listen + 1), "--admin-base", str(admin),
            "--upstream-base", str(upstream), "--prefix", f"pxtest-up-{uuid.uuid4().hex[:8]}",
        ],
    )  # fmt: skip
    clients: list[Client] = []
    children: list[int] = []
    try:
        await cluster.wait_line(UP_LINE, timeout=60)
        assert b"`upgrade NODE`" in cluster.stdout()
        for port in (listen + 1, listen):
            clients.append(await Client.connect(f"127.0.0.1:{port}", collect=True))
            await clients[-1].round_trip(b"<before>")
        before = {pid for pid in children_of(cluster.pid) if "--node-id" in cmdline(pid)}
        cluster.signal(signal.SIGUSR1)
        for name in ("node1", "node2"):
            await eventually(said(cluster, f"{name} upgraded in place"), timeout=60, message=name)
        for client in clients:
            await client.round_trip(b"<after>")
        children = children_of(cluster.pid)
        nodes = {pid for pid in children if "--node-id" in cmdline(pid)}
        assert len(nodes) == 2
        assert not nodes & before  # two new processes
        assert all("--take-over" in cmdline(pid) for pid in nodes)
        assert b"restarting" not in cluster.stderr()
    finally:
        for client in clients:
            await client.aclose()
        cluster.signal(signal.SIGINT)
        await cluster.wait_exit(timeout=30)
        for pid in children:
            if not pid_gone(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def said(proc: Proc, text: str) -> Callable[[], bool]:
    return lambda: text.encode() in proc.stderr()
