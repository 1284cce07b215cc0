"""What Python allocates per idle socket in a node: a tracemalloc breakdown.

``python -m bench.session_memory [--sockets N] [--group lineno|filename|traceback] [--bare]``

Starts a node in this process (the shipped loop: uvloop when installed, the in-memory fleet,
one in-process echo upstream), snapshots tracemalloc, opens ``--sockets`` idle sockets from
a child process, waits until the node holds them all, snapshots again and prints the top
allocation sites by bytes per socket, the objects per socket by type (``gc``), and the
process's VmRSS growth per socket (tracemalloc sees Python's allocations, not libuv's or the
kernel's, so the two differ; tracemalloc's own bookkeeping inflates that VmRSS too).

``--bare``: no node and no tracemalloc, only the loop's transports under a protocol that keeps
nothing but its transport: the VmRSS per socket no node on this loop can go below.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import subprocess
import sys
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from paradoxplex.node.cli.main import install_uvloop
from paradoxplex.node.fleet.memory import memory_backend
from paradoxplex.node.node import Node
from paradoxplex.shared.config import Address, NodeConfig
from paradoxplex.upstream import Message, Outbox, UpstreamServer

CLIENTS = """
import socket, sys
port, count = int(sys.argv[1]), int(sys.argv[2])
held = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
print("connected", flush=True)
sys.stdin.readline()
"""


def rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def types() -> Counter[str]:
    gc.collect()
    return Counter(type(o).__qualname__ for o in gc.get_objects())


def echo(message: Message, out: Outbox) -> None:
    if not message.event:
        out.reply(message.client_uuid, message.payload)


async def wait_for(predicate: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the node did not get every socket")
        await asyncio.sleep(0.05)


class Bare(asyncio.Protocol):
    __slots__ = ("transport",)
    held: ClassVar[list[Bare]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.held.append(self)


async def open_clients(port: int, sockets: int) -> asyncio.subprocess.Process:
    """A child process holding ``sockets`` idle sockets to ``port`` until a line on stdin."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CLIENTS,
        str(port),
        str(sockets),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert child.stdout is not None
    await child.stdout.readline()
    return child


async def close_clients(child: asyncio.subprocess.Process) -> None:
    assert child.stdin is not None
    child.stdin.write(b"\n")
    await child.stdin.drain()
    await child.wait()


async def measure_bare(sockets: int) -> None:
    server = await asyncio.get_running_loop().create_server(Bare, "127.0.0.1", 0, backlog=1024)
    await asyncio.sleep(0.2)
    gc.collect()
    before = rss()
    child = await open_clients(server.sockets[0].getsockname()[1], sockets)
    await wait_for(lambda: len(Bare.held) >= sockets, 60)
    await asyncio.sleep(0.5)
    gc.collect()
    loop = type(asyncio.get_running_loop()).__module__
    print(f"bare protocol on {loop}: VmRSS growth {(rss() - before) / sockets:,.0f} B per socket")
    await close_clients(child)
    server.close()


async def measure(sockets: int, group: str, top: int) -> None:
    upstream = UpstreamServer(echo)
    port = await upstream.start("127.0.0.1:0")
    config = NodeConfig(
        listen=Address("127.0.0.1", 0),
        admin=Address("127.0.0.1", 0),
        upstream=(Address("127.0.0.1", port),),
        node_id="memory",
        drain_grace=0.0,
        max_connections=sockets + 100,
    )
    node = Node(config, memory_backend())
    await node.start()
    await wait_for(lambda: len(node.pool.balancer_members()) == 1, 10)
    await asyncio.sleep(0.5)
    gc.collect()
    before_types, before_rss = types(), rss()
    first = tracemalloc.take_snapshot()
    child = await open_clients(int(node.listen_address.rsplit(":", 1)[1]), sockets)
    await wait_for(lambda: len(node.sessions) >= sockets, 60)
    await asyncio.sleep(1.0)  # the session copy (fleet_sync) writes what it queued
    gc.collect()
    second = tracemalloc.take_snapshot()
    after_rss, after_types = rss(), types()
    report(first, second, before_types, after_types, sockets, group, top)
    print(f"VmRSS growth: {(after_rss - before_rss) / sockets:,.0f} bytes per socket")
    await close_clients(child)
    await node.stop()
    await upstream.stop(0)


def report(
    first: tracemalloc.Snapshot,
    second: tracemalloc.Snapshot,
    before_types: Counter[str],
    after_types: Counter[str],
    sockets: int,
    group: str,
    top: int,
) -> None:
    stats = second.compare_to(first, group)
    total = sum(s.size_diff for s in stats)
    print(f"tracemalloc growth: {total / sockets:,.0f} bytes per socket ({sockets} sockets)")
    for stat in stats[:top]:
        if stat.size_diff / sockets < 1:
            break
        where = stat.traceback.format(limit=4 if group == "traceback" else 1)
        size, count = stat.size_diff / sockets, stat.count_diff / sockets
        print(f"{size:8,.1f} B {count:6.2f} blocks  ", end="")
        print("\n" + " " * 30 if len(where) > 1 else "", end="")
        print(("\n" + " " * 30).join(line.strip() for line in where if line.strip()))
    print("objects per socket by type:")
    grown = {name: (after_types[name] - before_types[name]) / sockets for name in after_types}
    for name, per in sorted(grown.items(), key=lambda item: -item[1])[:top]:
        if per < 0.05:
            break
        print(f"  {per:6.2f} {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=5000)
    parser.add_argument("--group", choices=["lineno", "filename", "traceback"], default="lineno")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--bare", action="store_true", help="the loop's floor (no node)")
    args = parser.parse_args()
    install_uvloop()
    if args.bare:
        asyncio.run(measure_bare(args.sockets))
        return
    tracemalloc.start(8)
    asyncio.run(measure(args.sockets, args.group, args.top))


if __name__ == "__main__":
    main()
