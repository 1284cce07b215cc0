"""Cross-node replies travel in batches: the envelope round trip and the batch bounds."""

from __future__ import annotations

from collections import deque

import pytest

from paradoxplex.node.delivery.courier import MAX_BATCH, MAX_BATCH_BYTES, take_batch
from paradoxplex.shared import envelopes
from paradoxplex.shared.batches import BatchLimits


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
        (10, MAX_BATCH_BYTES // 2, 2),  # exactly MAX_BATCH_BYTES fits
        (10, MAX_BATCH_BYTES // 2 + 1, 1),  # at most MAX_BATCH_BYTES: no overshoot
        (10, MAX_BATCH_BYTES * 3 // 4, 1),  # (it once took two, 1.5 times the bound)
        (2, MAX_BATCH_BYTES * 2, 1),  # a reply larger than the bound still goes, alone
    ],
)
def test_a_batch_is_bounded(count: int, size: int, expected: int) -> None:
    queue = deque((f"s{n}", b"x" * size) for n in range(count))
    batch = take_batch(queue)
    assert len(batch) == expected
    assert [session for session, _ in batch] == [f"s{n}" for n in range(expected)]
    assert len(queue) == count - expected
    assert len(batch) == 1 or sum(len(payload) for _, payload in batch) <= MAX_BATCH_BYTES


def test_a_batch_follows_the_shared_batch_limits() -> None:
    limits = BatchLimits(max_items=3, max_bytes=10)
    queue = deque((f"s{n}", b"x" * size) for n, size in enumerate([4, 4, 3, 1, 1, 1, 1, 20, 1]))
    lengths = []
    while queue:
        lengths.append(len(take_batch(queue, limits)))
    assert lengths == limits.split([4, 4, 3, 1, 1, 1, 1, 20, 1]) == [2, 3, 2, 1, 1]
