"""Batch bounds between a node and an upstream: count, bytes, alone, refused."""

from __future__ import annotations

import pytest

from paradoxplex.shared.batches import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_ITEMS,
    ENVELOPE,
    MAX_MESSAGE,
    BatchLimits,
)

KIB = 1024
LIMITS = BatchLimits(max_items=4, max_bytes=10 * KIB, max_message=100 * KIB)


def test_the_defaults_stay_well_under_the_message_size() -> None:
    limits = BatchLimits()
    assert (limits.max_items, limits.max_bytes) == (DEFAULT_MAX_ITEMS, DEFAULT_MAX_BYTES)
    assert limits.max_bytes * 64 == MAX_MESSAGE
    assert limits.max_single == MAX_MESSAGE - ENVELOPE


@pytest.mark.parametrize(
    ("sizes", "lengths"),
    [
        ([], []),
        ([1] * 9, [4, 4, 1]),  # at most max_items
        ([4 * KIB] * 5, [2, 2, 1]),  # at most max_bytes
        ([5 * KIB, 5 * KIB, 1], [2, 1]),  # exactly max_bytes fits
        ([1, 50 * KIB, 1], [1, 1, 1]),  # larger than max_bytes: alone
        ([50 * KIB], [1]),
        # 600 replies of 128 KiB under the defaults: 8 per batch, none over 1 MiB
        ([128 * KIB] * 600, [8] * 75),
    ],
)
def test_split(sizes: list[int], lengths: list[int]) -> None:
    limits = BatchLimits() if len(sizes) == 600 else LIMITS
    assert limits.split(sizes) == lengths
    assert sum(lengths) == len(sizes)


@pytest.mark.parametrize(
    ("count", "total", "size", "admitted"),
    [
        (0, 0, 99 * KIB, True),  # the first message always joins
        (1, 1, 10 * KIB - 1, True),
        (1, 1, 10 * KIB, False),
        (4, 4, 1, False),
        (3, 3, 1, True),
    ],
)
def test_admits(count: int, total: int, size: int, admitted: bool) -> None:
    assert LIMITS.admits(count, total, size) is admitted


@pytest.mark.parametrize(
    ("size", "fits"), [(100 * KIB - ENVELOPE, True), (100 * KIB - ENVELOPE + 1, False)]
)
def test_fits(size: int, fits: bool) -> None:
    assert LIMITS.fits(size) is fits


@pytest.mark.parametrize(
    "settings",
    [
        {"max_items": 0},
        {"max_bytes": 0},
        {"max_bytes": 2 * KIB, "max_message": ENVELOPE + KIB},
    ],
)
def test_bad_limits_are_refused(settings: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="max_"):
        BatchLimits(**settings)
