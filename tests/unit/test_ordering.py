"""The receiver's ordering core, without a loop: apply once, in order, count what never came."""

from __future__ import annotations

import random

import pytest

from paradoxplex.shared.ordering import (
    Apply,
    Duplicate,
    Gap,
    Order,
    Verdict,
    epoch_started,
    new_epoch,
)

SINCE = 1_000
OLD = new_epoch(SINCE - 10, rng=random.Random(1))  # a sender that started before the receiver
NEW = new_epoch(SINCE + 10, rng=random.Random(2))  # one that started after it


def verdicts(order: Order, *seqs: int, epoch: int = OLD, sender: str = "a") -> list[Verdict]:
    """Each seq carries one message: total == seq."""
    return [order.accept(sender, epoch, seq, seq) for seq in seqs]


def test_an_epoch_keeps_its_start_time() -> None:
    assert epoch_started(new_epoch(123_456)) == 123_456
    assert new_epoch(5, rng=random.Random(1)) != new_epoch(5, rng=random.Random(2))


def test_in_order_envelopes_apply() -> None:
    assert verdicts(Order(since=SINCE), 1, 2, 3) == [Apply(), Apply(), Apply()]


def test_a_repeat_is_a_duplicate() -> None:
    assert verdicts(Order(since=SINCE), 1, 2, 2, 1, 3) == [
        Apply(),
        Apply(),
        Duplicate(),
        Duplicate(),
        Apply(),
    ]


def test_a_jump_is_a_gap_then_order_goes_on() -> None:
    assert verdicts(Order(since=SINCE), 1, 4, 5) == [Apply(), Gap(missing=2, lost=2), Apply()]


def test_a_late_envelope_after_its_gap_is_a_duplicate() -> None:
    """A gap is final: what was counted lost is not applied if it shows up later."""
    assert verdicts(Order(since=SINCE), 1, 3, 2) == [Apply(), Gap(1, 1), Duplicate()]


def test_lost_counts_messages_not_envelopes() -> None:
    order = Order(since=SINCE)
    assert order.accept("a", OLD, 1, total=10, count=10) == Apply()
    # envelope 2 carried 7 messages and never came; envelope 3 carries 3 more
    assert order.accept("a", OLD, 3, total=20, count=3) == Gap(missing=1, lost=7)


def test_senders_are_tracked_apart() -> None:
    order = Order(since=SINCE)
    assert verdicts(order, 1, 2, sender="a") == [Apply(), Apply()]
    assert verdicts(order, 5, 6, sender="b") == [Apply(), Apply()]  # b's baseline
    assert verdicts(order, 3, sender="a") == [Apply()]


@pytest.mark.parametrize(
    ("epoch", "expected"),
    [(OLD, Apply()), (NEW, Gap(missing=4, lost=4))],
    ids=["started-before-the-receiver", "started-after-the-receiver"],
)
def test_a_first_envelope_is_a_baseline_only_for_senders_older_than_the_receiver(
    epoch: int, expected: Verdict
) -> None:
    assert Order(since=SINCE).accept("a", epoch, 5, 5) == expected


def test_a_new_epoch_starts_over_and_an_old_one_is_stale() -> None:
    order = Order(since=SINCE)
    assert verdicts(order, 1, 2, 3, epoch=OLD) == [Apply()] * 3
    assert verdicts(order, 1, 2, epoch=NEW) == [Apply(), Apply()]
    assert verdicts(order, 4, epoch=OLD) == [Duplicate()]


def test_a_tail_reveals_a_loss_at_the_end_of_a_burst() -> None:
    order = Order(since=SINCE)
    verdicts(order, 1, 2)
    assert order.tail("a", OLD, seq=5, total=9) == Gap(missing=3, lost=7)
    assert order.tail("a", OLD, seq=5, total=9) is None  # counted once
    assert verdicts(order, 3, 6) == [Duplicate(), Apply()]


def test_a_tail_after_everything_arrived_is_quiet() -> None:
    order = Order(since=SINCE)
    verdicts(order, 1, 2)
    assert order.tail("a", OLD, seq=2, total=2) is None
    assert order.tail("a", OLD, seq=1, total=1) is None


def test_a_first_tail_of_a_new_sender_counts_everything() -> None:
    assert Order(since=SINCE).tail("a", NEW, seq=2, total=3) == Gap(missing=2, lost=3)
    assert Order(since=SINCE).tail("a", OLD, seq=2, total=3) is None


def test_repr_summarises() -> None:
    order = Order(since=SINCE)
    verdicts(order, 1, sender="a")
    verdicts(order, 1, sender="b")
    assert repr(order) == "<Order senders=2 since=1000>"


def test_a_successor_goes_on_where_the_receiver_stopped() -> None:
    """A hot handoff: what was applied before is a duplicate after, the next one applies, a
    jump is still a gap, and a sender new to both is judged by the first receiver's start."""
    first = Order(since=SINCE)
    assert verdicts(first, 1, 2, 3) == [Apply(), Apply(), Apply()]
    assert first.accept("b", OLD, 7, total=9, count=2) == Apply()
    successor = Order.resumed(first.positions(), since=SINCE)
    assert verdicts(successor, 3, 4) == [Duplicate(), Apply()]
    assert successor.accept("b", OLD, 9, total=13, count=2) == Gap(missing=1, lost=2)
    assert verdicts(successor, 2, sender="c", epoch=NEW) == [Gap(missing=1, lost=1)]


def test_positions_are_by_sender() -> None:
    order = Order(since=SINCE)
    verdicts(order, 1, 2, sender="b")
    verdicts(order, 1, sender="a")
    assert [(p.sender, p.seq, p.total) for p in order.positions()] == [("a", 1, 1), ("b", 2, 2)]
