"""Delivering again: attempts and their cap, the retry budget (a token bucket with ``now`` as a
parameter), what waits per socket in number order, and who answers a redelivered message."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from paradoxplex.shared.redelivery import Answers, Redeliveries, RetryBudget, judge
from paradoxplex.shared.unacked import UnackedTotals


@dataclass
class Item:
    client_uuid: str
    seq: int
    payload: bytes = b"xx"
    attempt: int = 1


def test_the_budget_starts_full_and_a_redelivery_spends_a_token() -> None:
    budget = RetryBudget(ratio=0.1, floor=0.0, burst=3, now=0.0)
    assert [budget.spend(now=0.0, first_deliveries=0) for _ in range(4)] == [
        True,
        True,
        True,
        False,
    ]


def test_the_budget_earns_a_fraction_of_first_deliveries() -> None:
    budget = RetryBudget(ratio=0.1, floor=0.0, burst=2, now=0.0)
    budget.spend(now=0.0, first_deliveries=0)
    budget.spend(now=0.0, first_deliveries=0)
    assert not budget.spend(now=0.0, first_deliveries=5)  # 0.5 of a token
    assert budget.spend(now=0.0, first_deliveries=10)  # 1.0
    assert not budget.spend(now=0.0, first_deliveries=10)


def test_the_budget_earns_its_floor_over_time_and_never_past_its_burst() -> None:
    budget = RetryBudget(ratio=0.0, floor=10.0, burst=2, now=0.0)
    for _ in range(2):
        budget.spend(now=0.0, first_deliveries=0)
    assert not budget.spend(now=0.05, first_deliveries=0)  # 0.5 of a token
    assert budget.spend(now=0.1, first_deliveries=0)
    budget.spend(now=100.0, first_deliveries=0)
    assert budget.tokens == pytest.approx(1.0)  # capped at 2, one spent


def test_a_budget_needs_sane_values() -> None:
    with pytest.raises(ValueError, match="ratio"):
        RetryBudget(ratio=-1)


def test_judge_sends_again_with_one_more_attempt_until_the_cap() -> None:
    budget = RetryBudget(burst=10)
    fresh, last = Item("a", 1, attempt=1), Item("a", 2, attempt=3)
    queued = Item("a", 3, attempt=2)
    judged = judge([fresh, last], [queued], max_deliveries=3, budget=budget, now=0.0,
                   first_deliveries=0)  # fmt: skip
    assert judged.again == [fresh, queued]
    assert fresh.attempt == 2
    assert queued.attempt == 2  # never written: goes as it was, free
    assert judged.exhausted == [last]
    assert budget.tokens == pytest.approx(9.0)


def test_judge_drops_what_the_budget_cannot_pay_for() -> None:
    budget = RetryBudget(floor=0.0, burst=1)
    items = [Item("a", 1), Item("b", 1)]
    judged = judge(items, [], max_deliveries=3, budget=budget, now=0.0, first_deliveries=0)
    assert judged.again == items[:1]
    assert judged.over_budget == items[1:]


def test_redeliveries_wait_per_socket_in_number_order_and_count_in_the_totals() -> None:
    totals = UnackedTotals()
    waiting: Redeliveries[Item] = Redeliveries(totals)
    assert waiting.add([Item("a", 5), Item("b", 1)], now=1.0) == ["a", "b"]
    waiting.add([Item("a", 3), Item("a", 4)], now=2.0)  # from another link, later
    assert [item.seq for item in waiting.waiting("a")] == [3, 4, 5]
    assert "a" in waiting
    assert len(waiting) == 4
    assert (totals.messages, totals.bytes) == (4, 8)
    waiting.placed("a", 2)
    assert [item.seq for item in waiting.waiting("a")] == [5]
    waiting.placed("a", 1)
    assert "a" not in waiting
    assert (totals.messages, totals.bytes) == (1, 2)


def test_what_waits_too_long_expires_whole_sockets() -> None:
    waiting: Redeliveries[Item] = Redeliveries(UnackedTotals())
    waiting.add([Item("a", 1), Item("a", 2)], now=0.0)
    waiting.add([Item("b", 1)], now=5.0)
    assert waiting.next_expiry(10.0) == 10.0
    assert waiting.expired(now=9.0, timeout=10.0) == []
    assert [item.seq for item in waiting.expired(now=10.0, timeout=10.0)] == [1, 2]
    assert "a" not in waiting
    assert "b" in waiting
    assert waiting.next_expiry(10.0) == 15.0
    waiting.placed("b", 1)
    assert waiting.next_expiry(10.0) is None


def test_the_first_upstream_to_answer_a_redelivered_message_owns_it() -> None:
    answers = Answers()
    assert answers.accept("a", 1, "u1")  # not redelivered: anyone
    answers.redelivered("a", 1)
    assert answers.accept("a", 1, "u2")
    assert answers.accept("a", 1, "u2")  # its second reply
    assert not answers.accept("a", 1, "u1")  # the late first upstream


def test_answers_forget_the_oldest_past_their_limit() -> None:
    answers = Answers(limit=2)
    for seq in (1, 2, 3):
        answers.redelivered("a", seq)
    assert len(answers) == 2
    answers.accept("a", 1, "u1")
    assert answers.accept("a", 1, "u2")  # forgotten: no owner any more
