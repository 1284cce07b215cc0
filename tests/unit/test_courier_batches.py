"""Cross-node replies travel in batches: the envelope round trip and the batch bounds."""

from __future__ import annotations

from collections import deque

import pytest

from paradoxplex.node.delivery.courier import MAX_BATCH, MAX_BATCH_BYTES, take_batch
from paradoxplex.shared import envelopes


def test_a_batch_envelope_keeps_every_reply_in_order() -> None:
    items = [(f"00000000-0000-4000-8000-{n:012d}", bytes([n]) * n) for n in range(50)]
    envelope = envelopes.parse(envelopes.deliver_batch("node-a", items))
    assert envelope.sender == "node-a"
    assert envelope.WhichOneof("body") == "deliver_batch"
    got = [(item.client_uuid, item.payload) for item in envelope.deliver_batch.items]
    assert got == items


@pytest.mark.parametrize(
    ("count", "size", "expected"),
    [
        (3, 10, 3),  # everything queued goes at once
        (MAX_BATCH + 5, 1, MAX_BATCH),  # at most MAX_BATCH replies
        (10, MAX_BATCH_BYTES // 2, 2),  # about MAX_BATCH_BYTES: stops once it is reached
        (2, MAX_BATCH_BYTES * 2, 1),  # a reply larger than the bound still goes, alone
    ],
)
def test_a_batch_is_bounded(count: int, size: int, expected: int) -> None:
    queue = deque((f"s{n}", b"x" * size) for n in range(count))
    batch = take_batch(queue)
    assert len(batch) == expected
    assert [session for session, _ in batch] == [f"s{n}" for n in range(expected)]
    assert len(queue) == count - expected
