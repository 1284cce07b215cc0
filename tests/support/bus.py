"""Helpers for bus tests, whatever the backend.

- ``Inbox``: an envelope handler that keeps what it is given; tests wait on it.
- ``settled``: wait until everything published before a control marker has arrived.
- ``send_all``: ``send`` each envelope in turn, stopping at the first that is not delivered.
- ``redis_bus``: a ``RedisBus`` on a client of its own (``client.connect``, as ``backends``
  makes one), closed with it; ``options`` go to ``RedisBus`` as they are.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from paradoxplex.node.fleet.redis import RedisBus, connect
from paradoxplex.shared.fleet import FleetBus
from tests.support.eventually import eventually


class Inbox:
    """A handler that keeps what it is given."""

    def __init__(self) -> None:
        self.items: list[bytes] = []

    async def __call__(self, envelope: bytes) -> None:
        self.items.append(envelope)

    def got(self, *expected: bytes) -> Callable[[], bool]:
        return lambda: self.items == list(expected)

    def holds(self, item: bytes) -> Callable[[], bool]:
        return lambda: item in self.items


async def started(bus: FleetBus, node_id: str) -> Inbox:
    inbox = Inbox()
    await bus.start(node_id, inbox)
    return inbox


async def settled(sender: FleetBus, *inboxes: Inbox) -> None:
    """Wait until a control marker reached every inbox: whatever was published before it
    and was meant for them has arrived too (one connection delivers in publish order)."""
    marker = os.urandom(16)
    await sender.control(marker)
    for inbox in inboxes:
        await eventually(inbox.holds(marker), message="the control marker")
        inbox.items.remove(marker)


async def send_all(bus: FleetBus, node_id: str, envelopes: Sequence[bytes]) -> bool:
    """``send`` each, in order; False at the first not delivered (the rest are not sent)."""
    for envelope in envelopes:
        if not await bus.send(node_id, envelope):
            return False
    return True


def redis_bus(url: str, *, prefix: str, **options: Any) -> RedisBus:
    """A bus for ``url`` (one server, shards, a cluster) that closes its client."""
    return RedisBus(connect(url), prefix=prefix, owns_client=True, **options)
