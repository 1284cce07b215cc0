"""The closed-loop tally: what became of each request, from the lines sent and received."""

from __future__ import annotations

import pytest

from tests.support.closed_loop import Counts, count_lines

SENT = [b"1", b"2", b"3", b"4"]


@pytest.mark.parametrize(
    ("received", "answered", "duplicates", "out_of_order", "lost", "foreign"),
    [
        ([b"1", b"2", b"3", b"4"], 4, 0, 0, 0, 0),
        ([b"1", b"2", b"2", b"3", b"4"], 4, 1, 0, 0, 0),
        ([b"1", b"3", b"2", b"4"], 4, 0, 1, 0, 0),
        ([b"1", b"2"], 2, 0, 0, 2, 0),
        ([b"1", b"9", b"2", b"3", b"4"], 4, 0, 0, 0, 1),
    ],
)
def test_each_kind_of_outcome_is_counted(
    received: list[bytes],
    answered: int,
    duplicates: int,
    out_of_order: int,
    lost: int,
    foreign: int,
) -> None:
    counts = count_lines(SENT, received)
    assert counts == Counts(4, answered, duplicates, out_of_order, lost, foreign)
    assert counts.exactly_once_in_order is (received == SENT)
