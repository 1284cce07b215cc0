"""The wire ``time`` field: RFC 3339 UTC with milliseconds, from a time the caller passes."""

from __future__ import annotations

import pytest

from paradoxplex.shared.timestamps import timestamp


@pytest.mark.parametrize(
    ("now", "text"),
    [
        (0.0, "1970-01-01T00:00:00.000Z"),
        (1714564800.0, "2024-05-01T12:00:00.000Z"),
        (1714564800.1239, "2024-05-01T12:00:00.123Z"),
        (1714564800.9999, "2024-05-01T12:00:00.999Z"),
        (1714564801.0, "2024-05-01T12:00:01.000Z"),
    ],
)
def test_timestamp_format(now: float, text: str) -> None:
    assert timestamp(now) == text


def test_the_same_millisecond_gives_the_same_text() -> None:
    assert timestamp(1714564800.1231) == timestamp(1714564800.1238) == "2024-05-01T12:00:00.123Z"


def test_going_back_in_time_is_formatted_too() -> None:
    assert timestamp(1714564800.5) == "2024-05-01T12:00:00.500Z"
    assert timestamp(1714564800.25) == "2024-05-01T12:00:00.250Z"
