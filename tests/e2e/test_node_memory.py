"""The node's memory is bounded as a whole, not only per socket: ``--max-buffered``.

A node process (its RSS is its own, not the test's) in front of an upstream in this process
that answers ``flood`` with 50 replies of 1 MiB. Five clients that never read ask for a flood
each; the per-socket ``--write-buffer`` (64 MiB) would let each buffer all of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest

from paradoxplex.upstream import Message, Outbox
from tests.support.client import Client
from tests.support.eventually import eventually
from tests.support.metric_series import text_samples, value_of
from tests.support.node_harness import Recorder, start_upstream
from tests.support.processes import NODE_LINE, Running, start

pytestmark = pytest.mark.e2e

MIB = 1024 * 1024
REPLIES, CLIENTS = 50, 5
CHUNK = b"m" * MIB
LIMIT = 32 * MIB


def flood(message: Message, out: Outbox) -> bool:
    if message.payload != b"flood":
        return False
    for _ in range(REPLIES):
        out.reply(message.client_uuid, CHUNK)
    return True


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def metric(admin: str, name: str, **labels: str) -> float:
    """One series of the node's ``/metrics``; ``NoSuchSeries`` when it is not exported."""
    async with aiohttp.ClientSession() as http, http.get(f"{admin}/metrics") as response:
        text = await response.text()
    return value_of(text_samples(text), name, **labels)


@contextlib.asynccontextmanager
async def node_process(upstream_port: int, *extra: str) -> AsyncIterator[tuple[Running, int, str]]:
    node, ready = await asyncio.to_thread(
        start,
        "node",
        "--listen", "127.0.0.1:0",
        "--admin", "127.0.0.1:0",
        "--upstream", f"127.0.0.1:{upstream_port}",
        "--node-id", "memory",
        "--drain-grace", "0",
        "--write-buffer", str(64 * MIB),
        *extra,
        ready=NODE_LINE,
    )  # fmt: skip
    try:
        yield node, int(ready["port"]), ready["admin"]
    finally:
        await asyncio.to_thread(node.close)


async def echoed_to_a_new_client(port: int, data: bytes) -> bool:
    """A new client's ``round_trip`` passes (else it raises)."""
    async with await Client.connect(port) as client:
        await client.round_trip(data)
    return True


async def never_reading(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    await asyncio.get_running_loop().sock_sendall(sock, b"flood")
    return sock


async def test_five_clients_that_never_read_stay_within_max_buffered_and_rss_comes_back() -> None:
    server, _ = await start_upstream(Recorder(rule=flood))
    try:
        async with node_process(server.port, "--max-buffered", str(LIMIT)) as (node, port, admin):
            pid = node.process.pid
            await eventually(lambda: echoed_to_a_new_client(port, b"warm up"), timeout=10)
            for _ in range(20):
                await echoed_to_a_new_client(port, b"x" * 65536)
            baseline = rss(pid)
            peak = baseline
            socks = [await never_reading(port) for _ in range(CLIENTS)]
            try:

                async def all_replies_routed() -> bool:
                    nonlocal peak
                    peak = max(peak, rss(pid))
                    got = await metric(
                        admin,
                        "paradoxplex_upstream_messages_total",
                        direction="in",
                        upstream=f"127.0.0.1:{server.port}",
                    )
                    return got >= REPLIES * CLIENTS

                await eventually(all_replies_routed, timeout=60, interval=0.05)
                assert await echoed_to_a_new_client(port, b"a reader that keeps up is served")
                closed = await metric(
                    admin, "paradoxplex_sockets_closed_total", reason="node buffer full"
                )
                buffered = await metric(admin, "paradoxplex_buffered_bytes")
            finally:
                for sock in socks:
                    sock.close()

            async def settled() -> bool:
                return await metric(admin, "paradoxplex_sockets") == 0

            await eventually(settled, timeout=10)
            # what the upstream still had in flight for the closed sockets is read and dropped,
            # then freed: on a loaded machine that takes a moment
            await eventually(lambda: rss(pid) - baseline < 24 * MIB, timeout=10)
            after = rss(pid)
    finally:
        await server.stop(0)
    print(
        f"node RSS: baseline {baseline / MIB:.1f} MiB, peak {peak / MIB:.1f} MiB, "
        f"after {after / MIB:.1f} MiB; bound {LIMIT / MIB:.0f} MiB; "
        f"{closed:.0f} sockets closed at the bound; {buffered / MIB:.1f} MiB buffered at the end"
    )
    assert closed >= 1
    assert buffered <= LIMIT + MIB
    assert peak - baseline < LIMIT + 48 * MIB, "far beyond the bound"
    assert after - baseline < 24 * MIB, "RSS did not come back near its baseline"
