"""The fleet's promises in every Redis mode, with real ``paradoxplex node`` processes: over
three independent shards and over a three-master Redis Cluster, a node killed without warning
(SIGKILL) leaves every listing within 15 s, a socket on one node is sent to and closed through
another node's admin API, a node with ``--workers 2`` joins as two members, and a node told
to stop (SIGTERM) drains and leaves.
"""

from __future__ import annotations

import signal
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio

from tests.conftest import delete_prefix
from tests.support.client import Client
from tests.support.eventually import eventually
from tests.support.fleet import (
    Admin,
    NodeProc,
    Proc,
    echo_address,
    spawn_echo,
    spawn_node,
    stop_all,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CLEANUP_LIMIT = 15.0


@pytest_asyncio.fixture(params=["shards", "cluster"])
async def mode_url(request: pytest.FixtureRequest, key_prefix: str) -> AsyncIterator[str]:
    url: str = request.getfixturevalue(f"{request.param}_url")
    try:
        yield url
    finally:
        await delete_prefix(url, key_prefix)


async def test_crash_cleanup_cross_node_admin_workers_and_drain(
    mode_url: str, key_prefix: str
) -> None:
    procs: list[Proc] = []
    clients: list[Client] = []
    try:
        echo = spawn_echo()
        procs.append(echo)
        upstream = await echo_address(echo)
        nodes: list[NodeProc] = [
            spawn_node(mode_url, key_prefix, "m1", [upstream]),
            spawn_node(mode_url, key_prefix, "m2", [upstream]),
            spawn_node(mode_url, key_prefix, "m3", [upstream], "--workers", "2"),
        ]
        procs.extend(nodes)
        for node in nodes:
            await node.started()
        members = {"m1", "m2", "m3-w0", "m3-w1"}
        async with aiohttp.ClientSession() as http:
            first = Admin(nodes[0].admin_url, http)

            async def listed() -> bool:
                return await first.node_ids() == members

            await eventually(listed, timeout=15, message=f"{sorted(members)} in /v1/nodes")

            # a socket on m2, sent to and closed through m1
            client = await Client.connect(nodes[1].listen, collect=True)
            clients.append(client)
            await client.round_trip(b"<hello>")
            uuid = await first.uuid_of(client)
            await first.ok("POST", f"/v1/sockets/{uuid}/send", {"text": "<via m1>"})
            await client.expect(b"<via m1>")
            status, _ = await first.call("DELETE", f"/v1/sockets/{uuid}")
            assert status == 204
            await eventually(lambda: client.eof, message="closed through another node")

            # m2 killed without warning, with a socket: gone from m1's lists within 15 s
            doomed = await Client.connect(nodes[1].listen, collect=True)
            clients.append(doomed)
            await doomed.round_trip(b"<doomed>")
            doomed_uuid = await first.uuid_of(doomed)
            nodes[1].kill()
            killed = time.monotonic()

            async def cleaned_up() -> bool:
                return "m2" not in await first.node_ids() and doomed_uuid not in (
                    await first.socket_uuids()
                )

            await eventually(cleaned_up, timeout=CLEANUP_LIMIT + 5, interval=0.1)
            assert time.monotonic() - killed < CLEANUP_LIMIT

            # m1 told to stop: it drains, exits 0 and leaves the list
            nodes[0].signal(signal.SIGTERM)
            assert await nodes[0].wait_exit(timeout=20) == 0
            last = Admin(nodes[2].admin_url, http)

            async def left() -> bool:
                return "m1" not in await last.node_ids()

            await eventually(left, timeout=10, message="the stopped node left /v1/nodes")
    finally:
        for client in clients:
            await client.aclose()
        stop_all(procs)
