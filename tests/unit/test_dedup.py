"""The SDK's memory: delivery ids finished (bounded by count and age) and the replies of a
channel kept until the node takes them (numbered, cumulative acknowledgements, trimmed)."""

from __future__ import annotations

import pytest

from paradoxplex.shared.dedup import DeliveryWindow, ReplyLedger


def test_a_finished_delivery_id_is_seen_within_the_window() -> None:
    window = DeliveryWindow(max_ids=10, max_age=60.0)
    window.finished_all([("a", 1)], now=0.0)
    assert window.seen("a", 1, now=30.0)
    assert not window.seen("a", 2, now=30.0)
    assert not window.seen("b", 1, now=30.0)


def test_the_window_forgets_by_age() -> None:
    window = DeliveryWindow(max_ids=10, max_age=60.0)
    window.finished_all([("a", 1)], now=0.0)
    window.finished_all([("a", 2)], now=50.0)
    assert not window.seen("a", 1, now=61.0)
    assert window.seen("a", 2, now=61.0)


def test_the_window_forgets_the_oldest_by_count() -> None:
    window = DeliveryWindow(max_ids=2, max_age=60.0)
    window.finished_all([("a", 1), ("a", 2), ("a", 3)], now=0.0)
    assert [window.seen("a", seq, now=0.0) for seq in (1, 2, 3)] == [False, True, True]


def test_a_window_needs_sane_bounds() -> None:
    with pytest.raises(ValueError, match="max_ids"):
        DeliveryWindow(max_ids=0)


def test_replies_are_numbered_consecutively_and_kept_until_acknowledged() -> None:
    ledger: ReplyLedger[str] = ReplyLedger()
    assert ledger.number(["r1", "r2"]) == 1
    assert ledger.number(["r3"]) == 3
    assert ledger.number([]) == 4  # nothing numbered
    assert len(ledger) == 3
    assert ledger.acked(1) == 1
    assert ledger.unacked() == [(2, ["r2"]), (3, ["r3"])]
    assert ledger.acked(3) == 2
    assert ledger.unacked() == []
    assert ledger.acked(3) == 0


def test_a_ledger_keeps_at_most_its_limit_forgetting_the_oldest() -> None:
    ledger: ReplyLedger[str] = ReplyLedger()
    ledger.number(["r1", "r2", "r3"])
    ledger.number(["r4"])
    assert ledger.trim(2) == 2
    assert ledger.unacked() == [(3, ["r3"]), (4, ["r4"])]
    assert ledger.trim(5) == 0
