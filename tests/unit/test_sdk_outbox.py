"""The SDK's outbox builds the original proto's messages (no I/O: nothing is sent here)."""

from __future__ import annotations

import pytest

from paradoxplex.upstream.server import Outbox
from paradoxplex.wire import upstream_pb2 as pb


@pytest.mark.parametrize(
    ("target", "wire"),
    [
        ("all", pb.BROADCAST_ALL),
        ("active", pb.BROADCAST_ACTIVE),
        ("paused", pb.BROADCAST_NOT_ACTIVE),
        ("inactive", pb.BROADCAST_NOT_ACTIVE),
    ],
)
def test_a_broadcast_target_by_either_word_for_paused(target: str, wire: int) -> None:
    outbox = Outbox()
    assert outbox.broadcast(b"hi", target=target, label="site=a")
    [item] = outbox.items
    assert item.WhichOneof("target") == "broadcast"
    assert item.broadcast == wire
    assert (item.payload, item.broadcast_label) == (b"hi", "site=a")
