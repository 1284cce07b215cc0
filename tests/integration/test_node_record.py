"""What a node writes about itself at every heartbeat: state, message and drop counters."""

from __future__ import annotations

from tests.support.node_harness import Client, running_node, start_upstream


async def test_the_record_counts_messages_and_drops_and_says_the_state() -> None:
    server, _ = await start_upstream()
    try:
        async with running_node(server.port) as node:
            before = node.upkeep.record()
            assert before.state == "up"
            assert before.heartbeat_at >= before.started_at
            client = await Client.connect(node)
            try:
                await client.round_trip(b"hello")
            finally:
                await client.aclose()
            record = node.upkeep.record()
            assert record.messages_in == before.messages_in + 1
            assert record.messages_out == before.messages_out + 1
            assert record.heartbeat_at >= before.heartbeat_at
            node.metrics.drops.labels("socket_closed").inc(2)
            node.metrics.drops.labels("write_buffer_full").inc()
            assert node.upkeep.record().drops == before.drops + 3
            node.status.ok = False
            assert node.upkeep.record().state == "degraded"
            node.status.ok = True
            await node.drain(0)
            assert node.upkeep.record().state == "draining"
    finally:
        await server.stop(0)
