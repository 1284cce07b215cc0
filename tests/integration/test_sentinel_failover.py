"""A fleet on a Sentinel-managed Redis follows a failover (real processes: 1 master, 1 replica,
3 sentinels with ``down-after-milliseconds`` 1000, and two in-process nodes).

Node ``b`` forwards numbered replies ``<n>`` to a socket node ``a`` holds, at a steady pace,
while the master is SIGKILLed and the sentinels promote the replica. What must hold: within
10 s of the promotion a reply sent after it arrives (state and bus on the new master), and
every reply arrived exactly once, in order, or is counted as lost (``a``'s bus gaps, ``b``'s
drops): asynchronous replication may lose the last writes, and the count is printed. The
nodes' ``node_ttl`` outlasts the failover, as it must in production (see the README).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from paradoxplex.node.fleet.redis import RedisBus
from paradoxplex.node.node import Node
from paradoxplex.shared.config import Address
from tests.integration.test_fleet_delivery import LOST_AT_SENDER, drops, numbers
from tests.support.client import Client
from tests.support.eventually import eventually
from tests.support.fleet import accepted, registered, start_fleet, stop_nodes
from tests.support.sentinel_group import SentinelGroup

pytestmark = pytest.mark.slow

PER_TICK = 20
TICK = 0.02
FOLLOW_WITHIN = 10.0
#: Longer than a failover (as the default, 10 s): nodes must not take each other for dead
#: while the sentinels vote (a "dead" owner's replies are given up: lost for nothing).
NODE_TTL = 10.0


@pytest.fixture
def group() -> Iterator[SentinelGroup]:
    with SentinelGroup() as sentinel_group:
        yield sentinel_group


class Pump:
    """Forwards numbered replies from ``sender`` to ``client_uuid`` on ``owner`` until stopped."""

    def __init__(self, sender: Node, owner: str, client_uuid: str) -> None:
        self.sent = 0
        self.stopped = False
        self._args = (sender, owner, client_uuid)

    async def run(self) -> None:
        sender, owner, client_uuid = self._args
        while not self.stopped:
            for _ in range(PER_TICK):
                await sender.outbox.forward(owner, client_uuid, b"<%d>" % self.sent)
                self.sent += 1
            await asyncio.sleep(TICK)  # the scenario: traffic spread over time


async def test_the_fleet_follows_the_new_master(
    group: SentinelGroup, upstream: Address, key_prefix: str
) -> None:
    nodes = await start_fleet(
        group.url, key_prefix, [upstream], ids=("a", "b"), bus_hold=15.0, node_ttl=NODE_TTL
    )
    a, b = nodes
    client = await Client.connect(a.listen_address, collect=True)
    try:
        uuid = await accepted(a, client)
        pump = Pump(b, "a", uuid)
        pumping = asyncio.create_task(pump.run())
        await eventually(lambda: len(numbers(client)) >= 200, timeout=10, message="traffic flows")
        killed_at = time.monotonic()
        old = await asyncio.to_thread(group.kill_master)
        promoted_at = await asyncio.to_thread(group.wait_promotion, old)
        first_after = pump.sent
        await eventually(
            lambda: any(n >= first_after for n in numbers(client)),
            timeout=FOLLOW_WITHIN,
            interval=0.05,
            message="a reply sent after the promotion arrived",
        )
        followed = time.monotonic() - promoted_at
        await eventually(  # the state too: a's socket is found on the new master
            lambda: registered(a, uuid), timeout=FOLLOW_WITHIN - followed
        )
        pump.stopped = True
        await pumping
        await settle(a, b, client, pump.sent)
        got = numbers(client)
        lost = a.bus.stats.lost + drops(b, *LOST_AT_SENDER)
        assert len(got) == len(set(got)), "a reply arrived twice"
        assert got == sorted(got), "replies out of order"
        # what did not arrive is counted: at the receiver (a gap) or the sender (a drop), or
        # at both when an add's outcome was unknown (see outbox.py), never at neither
        assert pump.sent - len(got) <= lost, (len(got), pump.sent, a.bus.stats, lost)
        assert group.master_port() != old
        assert isinstance(a.bus, RedisBus)
        assert a.bus.reconnects >= 1
        print(
            f"\nsentinel failover: promoted {promoted_at - killed_at:.2f} s after the kill, "
            f"followed {followed:.2f} s after the promotion; "
            f"{len(got)} of {pump.sent} replies arrived, {lost} counted lost ({a.bus.stats})"
        )
    finally:
        await client.aclose()
        await stop_nodes(nodes)


async def settle(a: Node, b: Node, client: Client, sent: int) -> None:
    """Wait until every reply arrived or was counted as lost."""
    await eventually(
        lambda: len(numbers(client)) + a.bus.stats.lost + drops(b, *LOST_AT_SENDER) >= sent,
        timeout=20,
        interval=0.05,
        message=f"every reply arrived or counted ({len(numbers(client))} of {sent} arrived)",
    )
