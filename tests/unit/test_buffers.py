"""The node-wide bound on buffered reply bytes, fed without a loop or a socket."""

from __future__ import annotations

import pytest

from paradoxplex.shared.buffers import DEFAULT_LIMIT, ReplyBuffers

MIB = 1024 * 1024


def filled(limit: int, **shares: int) -> ReplyBuffers[str]:
    buffers: ReplyBuffers[str] = ReplyBuffers(limit=limit)
    for key, size in shares.items():
        buffers.update(key, size)
    return buffers


def test_the_default_limit_is_256_mib() -> None:
    assert ReplyBuffers[str]().limit == DEFAULT_LIMIT == 256 * MIB


def test_updates_keep_the_total_and_an_empty_share_is_forgotten() -> None:
    buffers = filled(10 * MIB, a=3 * MIB, b=MIB)
    buffers.update("a", MIB)
    assert buffers.total == 2 * MIB
    buffers.update("b", 0)
    assert (buffers.total, list(buffers.backlogged())) == (MIB, ["a"])
    buffers.forget("a")
    buffers.forget("never seen")
    assert buffers.total == 0
    assert repr(buffers) == f"<ReplyBuffers total=0 limit={10 * MIB} sockets=0>"


@pytest.mark.parametrize(
    ("limit", "total", "size", "fits"),
    [(10, 4, 6, True), (10, 4, 7, False), (0, 10**12, 10**12, True), (10, 0, 11, False)],
)
def test_fits(limit: int, total: int, size: int, fits: bool) -> None:
    buffers = filled(limit, a=total) if total else filled(limit)
    assert buffers.fits(size) is fits


def test_shed_closes_the_biggest_offenders_first_until_the_reply_fits() -> None:
    buffers = filled(10, a=2, b=5, c=3)
    assert buffers.shed("writer", 2) == ["b"]  # 10 - 5 + 2 fits
    assert buffers.total == 5
    assert buffers.shed("writer", 9) == ["c", "a"]
    assert buffers.total == 0


def test_the_writer_is_shed_when_it_is_the_biggest_and_then_only_room_for_the_rest_counts() -> None:
    buffers = filled(10, writer=7, small=3)
    assert buffers.shed("writer", 4) == ["writer"]  # its reply is dropped: no room needed
    assert (buffers.total, buffers.share("small")) == (3, 3)


def test_a_reply_larger_than_the_limit_to_an_empty_socket_goes_once_the_rest_is_shed() -> None:
    buffers = filled(10, a=4, b=4)
    assert buffers.shed("writer", 50) == ["a", "b"]
    assert buffers.total == 0  # nothing left to shed: the edge writes it (progress)


def test_nothing_is_shed_when_the_reply_fits() -> None:
    buffers = filled(10, a=4)
    assert buffers.shed("a", 6) == []
