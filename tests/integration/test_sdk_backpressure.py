"""The upstream SDK slows a stream down instead of breaking it when the node sends faster than
the node takes the replies back (its outbox holds ``max_pending``)."""

from __future__ import annotations

from paradoxplex.upstream import Message, Outbox, UpstreamServer
from tests.support.client import Client
from tests.support.node_harness import running_node

LINES = 3_000


def echo(message: Message, out: Outbox) -> None:
    if not message.event:
        out.reply(message.client_uuid, message.payload + b"\n")


async def test_a_flood_waits_for_room_in_a_small_outbox_and_every_reply_arrives() -> None:
    server = UpstreamServer(echo, max_pending=8)  # far fewer than one batch of messages
    port = await server.start("127.0.0.1:0")
    try:
        async with running_node(port, framing="line") as node:
            client = await Client.connect(node)
            try:
                await client.send(b"".join(b"%05d\n" % n for n in range(LINES)))
                echoed = await client.receive_exactly(6 * LINES, within=20)
                assert sorted(echoed.split()) == [b"%05d" % n for n in range(LINES)]
                assert len(node.pool.balancer_members()) == 1  # the stream never broke
            finally:
                await client.aclose()
    finally:
        await server.stop(0)
