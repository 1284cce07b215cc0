"""With sticky routing, a socket's messages reach its upstream in the order read: on the
batch stream and on the original proto's parallel streams alike (README, Delivery
semantics). Several sockets send many small messages at once, so the link's streams are
all busy; the upstream records what arrives, per socket."""

from __future__ import annotations

import asyncio
from collections import defaultdict

import pytest

from tests.support.client import Client
from tests.support.eventually import eventually
from tests.support.node_harness import Recorder, running_node, start_upstream

SOCKETS = 6
MESSAGES = 1_500
CHUNK = 50  # messages per write: many frames per read, reads racing each other


@pytest.mark.parametrize("batch", [True, False], ids=["batch", "original"])
async def test_each_socket_s_messages_arrive_in_the_order_sent(batch: bool) -> None:
    server, recorder = await start_upstream(Recorder(echo=False), batch=batch)
    try:
        async with running_node(server.port, routing="sticky", framing="line") as node:
            clients = [await Client.connect(node) for _ in range(SOCKETS)]
            try:

                async def send_all(client: Client) -> None:
                    for start in range(0, MESSAGES, CHUNK):
                        lines = b"".join(b"%d\n" % i for i in range(start, start + CHUNK))
                        await client.send(lines)
                        await asyncio.sleep(0)

                await asyncio.gather(*(send_all(client) for client in clients))
                await eventually(
                    lambda: len(recorder.data) == SOCKETS * MESSAGES,
                    message=f"{SOCKETS * MESSAGES} messages at the upstream",
                    timeout=30,
                )
            finally:
                for client in clients:
                    await client.aclose()
    finally:
        await server.stop(0)
    seen: dict[str, list[int]] = defaultdict(list)
    for message in recorder.messages:
        if not message.event:
            seen[message.client_uuid].append(int(message.payload))
    assert len(seen) == SOCKETS
    for client_uuid, numbers in seen.items():
        assert numbers == list(range(MESSAGES)), f"socket {client_uuid} out of order"
