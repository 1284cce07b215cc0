"""Node incarnations: ids, what counts as visible, and the claim decision (no I/O)."""

from __future__ import annotations

import re

import pytest

from paradoxplex.shared.errors import ConfigError
from paradoxplex.shared.incarnations import (
    Holder,
    Refuse,
    Replace,
    decide_claim,
    in_use,
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
