"""Node incarnations: ids, what counts as visible, and the claim decision (no I/O)."""

from __future__ import annotations

import re

import pytest

from paradoxplex.shared.errors import ConfigError
from paradoxplex.shared.incarnations import (
    Holder,
    Refuse,
    Replace,
    claim_value,
    claimant,
    decide_claim,
    in_use,
    live_set,
    new_incarnation,
    visible,
)

HOLDER = Holder("same-1", "aaaaaaaaaaaa", "127.0.0.1:7999", "http://127.0.0.1:8001")


def test_an_incarnation_is_fresh_hex() -> None:
    drawn = {new_incarnation() for _ in range(1000)}
    assert len(drawn) == 1000
    assert all(re.fullmatch(r"[0-9a-f]{12}", one) for one in drawn)


@pytest.mark.parametrize(
    ("written_by", "live", "counts"),
    [
        ("i1", "i1", True),  # the live incarnation's
        ("i1", "i2", False),  # a replaced one's: a ghost
        ("", "i2", False),  # a record of an earlier release, the node restarted since
        ("i1", None, True),  # the node is dead and not cleaned up yet: the reaper's business
    ],
)
def test_what_counts(written_by: str, live: str | None, counts: bool) -> None:
    assert visible(written_by, live) is counts


@pytest.mark.parametrize(
    ("answered", "decision"),
    [
        ("aaaaaaaaaaaa", Refuse(HOLDER)),  # the holder answered as itself: it lives
        (None, Replace(HOLDER)),  # nothing answered in time: killed, or its machine is gone
        ("bbbbbbbbbbbb", Replace(HOLDER)),  # its address answers as another incarnation
    ],
)
def test_the_claim_decision(answered: str | None, decision: Replace | Refuse) -> None:
    assert decide_claim(HOLDER, answered) == decision


def test_the_refusal_names_the_live_process_in_one_line() -> None:
    error = in_use(HOLDER)
    assert isinstance(error, ConfigError)
    assert error.key == "--node-id"
    message = str(error)
    assert "\n" not in message
    for part in ("'same-1'", "127.0.0.1:7999", "http://127.0.0.1:8001", "aaaaaaaaaaaa"):
        assert part in message


def test_a_claim_with_a_predecessor_counts_both_and_is_held_by_the_first() -> None:
    claim = claim_value("a1b2c3d4e5f6", "0f0f0f0f0f0f")
    assert claimant(claim) == "a1b2c3d4e5f6"
    assert live_set(claim) == {"a1b2c3d4e5f6", "0f0f0f0f0f0f"}
    assert visible("0f0f0f0f0f0f", claim)
    assert visible("a1b2c3d4e5f6", claim)
    assert not visible("999999999999", claim)
    assert claim_value("a1b2c3d4e5f6") == claimant("a1b2c3d4e5f6") == "a1b2c3d4e5f6"
    assert live_set(None) == frozenset()
    assert visible("anything", None)  # no claim: the reaper's business
