"""Helpers for bus tests, whatever the backend.

- ``Inbox``: an envelope handler that keeps what it is given; tests wait on it.
- ``settled``: wait until everything published before a control marker has arrived.
"""

from __future__ import annotations

import os
from collections.abc import Callable

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
