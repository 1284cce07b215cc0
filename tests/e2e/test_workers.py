"""``paradoxplex node --workers 2``: two fleet members on one listener, one parent to stop."""

from __future__ import annotations

import contextlib
import os
import signal
from collections import Counter

import aiohttp
import pytest

from tests.conftest import delete_prefix
from tests.support.client import Client, close_all
from tests.support.eventually import eventually
from tests.support.fleet import (
    NODE_LINE,
    Admin,
    Proc,
    children_of,
    echo_address,
    pid_gone,
    spawn_echo,
    stop_all,
)
from tests.support.ports import free_port, free_range
from tests.support.processes import executable, run

pytestmark = pytest.mark.e2e

#: Sockets opened to the shared listener: at least MIN, and more until both workers served one.
#: SO_REUSEPORT picks a worker by hashing each connection's addresses, so 8 sockets all land on
#: one worker about 1 time in 128, and MAX (1 in 2**63) never does unless only one is serving.
MIN_CLIENTS, MAX_CLIENTS = 8, 64


@pytest.mark.slow
async def test_two_workers_join_the_fleet_share_the_listener_and_stop_on_sigterm(
    redis_url: str, key_prefix: str
) -> None:
    listen = free_port()
    admin_base = free_range(2, avoid=[listen])
    echo = spawn_echo()
    procs: list[Proc] = [echo]
    clients: list[Client] = []
    children: list[int] = []
    try:
        upstream = await echo_address(echo)
        parent = Proc(
            "workers",
            [
                executable(), "node", "--workers", "2", "--redis", redis_url,
                "--key-prefix", key_prefix, "--node-id", "wk",
                "--listen", f"127.0.0.1:{listen}", "--admin", f"127.0.0.1:{admin_base}",
                "--upstream", upstream, "--heartbeat", "0.5", "--node-ttl", "3",
                "--drain-grace", "1",
            ],
        )  # fmt: skip
        procs.append(parent)
        lines = await parent.wait_line(NODE_LINE, count=2)
        printed = {(m["id"].decode(), m["admin"].decode()) for m in lines}
        assert printed == {
            ("wk-w0", f"http://127.0.0.1:{admin_base}"),
            ("wk-w1", f"http://127.0.0.1:{admin_base + 1}"),
        }
        assert {m["listen"].decode() for m in lines} == {f"127.0.0.1:{listen}"}
        children = children_of(parent.pid)
        assert len(children) == 2

        async with aiohttp.ClientSession() as http:
            for port in (admin_base, admin_base + 1):
                admin = Admin(f"http://127.0.0.1:{port}", http)

                async def both(admin: Admin = admin) -> bool:
                    return await admin.node_ids() == {"wk-w0", "wk-w1"}

                await eventually(both, message=f"both workers in /v1/nodes on {port}")

            first = Admin(f"http://127.0.0.1:{admin_base}", http)
            served_by: list[str] = []
            while len(clients) < MIN_CLIENTS or len(set(served_by)) < 2:
                assert len(clients) < MAX_CLIENTS, f"{len(clients)} sockets: {Counter(served_by)}"
                client = await Client.connect(f"127.0.0.1:{listen}", collect=True)
                clients.append(client)
                await client.round_trip(b"<w%d>" % len(clients))
                await first.uuid_of(client)
                served_by = [item["node"] for item in await first.sockets()]
            print(f"\nsockets per worker: {sorted(served_by)}")
            assert len(served_by) == len(clients)
            assert set(served_by) == {"wk-w0", "wk-w1"}  # each worker served some
            await close_all(clients)

        parent.signal(signal.SIGTERM)
        assert await parent.wait_exit(timeout=15) == 0, parent.tail()
        await eventually(lambda: all(map(pid_gone, children)), message="workers exited")
    finally:
        await close_all(clients)
        stop_all(procs)
        for pid in children:  # workers this test started (through their parent), by pid
            if not pid_gone(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        await delete_prefix(redis_url, key_prefix)


def test_workers_without_redis_exit_2_with_one_line_naming_workers() -> None:
    done = run(
        "node", "--workers", "2", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
        timeout=20,
    )  # fmt: skip
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "workers" in lines[0]
    assert "Traceback" not in done.stderr


@pytest.mark.slow
async def test_workers_whose_supervisor_is_killed_stop_instead_of_running_on(
    redis_url: str, key_prefix: str
) -> None:
    """SIGKILL leaves the supervisor no chance to stop its children: they notice it is gone
    and drain and stop by themselves (no orphaned fleet members)."""
    echo = spawn_echo()
    procs: list[Proc] = [echo]
    children: list[int] = []
    try:
        upstream = await echo_address(echo)
        parent = Proc(
            "workers",
            [
                executable(), "node", "--workers", "2", "--redis", redis_url,
                "--key-prefix", key_prefix, "--node-id", "orphan",
                "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
                "--upstream", upstream, "--heartbeat", "0.5", "--node-ttl", "3",
                "--drain-grace", "1",
            ],
        )  # fmt: skip
        procs.append(parent)
        await parent.wait_line(NODE_LINE, count=2)
        children = children_of(parent.pid)
        assert len(children) == 2
        parent.kill()
        await eventually(
            lambda: all(pid_gone(pid) for pid in children),
            timeout=15,
            message="the orphaned workers stopped",
        )
    finally:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        stop_all(procs)
        await delete_prefix(redis_url, key_prefix)
