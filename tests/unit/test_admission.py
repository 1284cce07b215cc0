"""Admission: the node's own limit and per-source limits, decided without a loop or a socket."""

from __future__ import annotations

import pytest

from paradoxplex.shared.admission import (
    FD_RESERVE,
    SWEEP_FLOOR,
    Admission,
    Refusal,
    fd_reserve,
    fd_shortfall,
    socket_room,
    source_of,
)


@pytest.mark.parametrize(
    ("host", "source"),
    [
        ("10.0.0.7", "10.0.0.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"),
        ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
        ("::ffff:10.0.0.7", "10.0.0.7"),
        ("fe80::1%eth0", "fe80::/64"),
        ("unknown", "unknown"),
    ],
)
def test_a_source_is_an_ipv4_address_or_an_ipv6_slash_64(host: str, source: str) -> None:
    assert source_of(host) == source


def test_everything_is_admitted_with_the_defaults() -> None:
    admission = Admission()
    for number in range(1000):
        assert admission.admit("10.0.0.1", number * 1e-6, held=number) is None
    assert admission.held_by("10.0.0.1") == 1000


@pytest.mark.parametrize(
    ("held", "draining", "refusal"),
    [
        (0, True, Refusal.DRAINING),
        (3, False, Refusal.MAX_CONNECTIONS),
        (5, True, Refusal.DRAINING),
        (2, False, None),
    ],
)
def test_draining_and_max_connections_come_first(
    held: int, draining: bool, refusal: Refusal | None
) -> None:
    admission = Admission(max_total=3)
    assert admission.admit("10.0.0.1", 0.0, held=held, draining=draining) is refusal


@pytest.mark.parametrize(
    ("held", "refusal"),
    [(99, None), (100, Refusal.FD_LIMIT), (150, Refusal.MAX_CONNECTIONS), (120, Refusal.FD_LIMIT)],
)
def test_sockets_past_the_open_file_room_are_refused_after_max_connections(
    held: int, refusal: Refusal | None
) -> None:
    admission = Admission(max_total=150, fd_room=100, max_per_source=1000)
    assert admission.admit("10.0.0.1", 0.0, held=held) is refusal


def test_a_refusal_for_open_files_comes_before_the_per_source_limits() -> None:
    admission = Admission(fd_room=1, max_per_source=1)
    assert admission.admit("10.0.0.1", 0.0, held=0) is None
    assert admission.admit("10.0.0.1", 0.0, held=1) is Refusal.FD_LIMIT


@pytest.mark.parametrize(
    ("limit", "reserve", "room"),
    [
        (0, FD_RESERVE, 0),
        (100, FD_RESERVE + 1, 0),
        (256, FD_RESERVE + 2, 126),
        (1024, FD_RESERVE + 10, 886),
        (20_000, FD_RESERVE + 200, 19_672),
        (1_048_576, FD_RESERVE + 1024, 1_047_424),
    ],
)
def test_the_node_keeps_a_reserve_of_its_open_files(limit: int, reserve: int, room: int) -> None:
    assert fd_reserve(limit) == reserve
    assert socket_room(limit) == room


def test_a_limit_too_low_for_max_connections_is_one_line_naming_both() -> None:
    assert fd_shortfall(10_000, 20_000) is None
    assert fd_shortfall(886, 1024) is None
    line = fd_shortfall(10_000, 1024)
    assert line is not None
    assert "\n" not in line
    assert line.startswith(
        "the open-file limit (1024) is below --max-connections (10000) plus 138 for the node "
        "itself: sockets past 886 will be refused (fd_limit)"
    )
    assert "LimitNOFILE=" in line


def test_a_source_holding_max_per_source_sockets_is_refused_until_one_closes() -> None:
    admission = Admission(max_per_source=2)
    assert admission.admit("10.0.0.1", 0.0, held=0) is None
    assert admission.admit("10.0.0.1", 0.0, held=1) is None
    assert admission.admit("10.0.0.1", 0.0, held=2) is Refusal.PER_IP
    assert admission.admit("10.0.0.2", 0.0, held=2) is None  # another source
    admission.release("10.0.0.1")
    assert admission.admit("10.0.0.1", 0.0, held=2) is None
    assert admission.held_by("10.0.0.1") == 2


def test_release_forgets_a_source_with_no_socket_left() -> None:
    admission = Admission(max_per_source=5)
    admission.admit("10.0.0.1", 0.0, held=0)
    admission.release("10.0.0.1")
    admission.release("10.0.0.1")  # one release too many is harmless
    assert admission.held_by("10.0.0.1") == 0
    assert "sources=0" in repr(admission)


def test_accept_rate_is_a_token_bucket_per_source() -> None:
    admission = Admission(rate=2.0)  # burst: one second's worth, 2
    assert admission.admit("10.0.0.1", 0.0, held=0) is None
    assert admission.admit("10.0.0.1", 0.0, held=1) is None
    assert admission.admit("10.0.0.1", 0.1, held=2) is Refusal.ACCEPT_RATE
    assert admission.admit("10.0.0.2", 0.1, held=2) is None  # its own bucket
    assert admission.admit("10.0.0.1", 0.5, held=3) is None  # 0.2 + 0.4 s * 2/s >= 1
    assert admission.admit("10.0.0.1", 0.6, held=4) is Refusal.ACCEPT_RATE
    assert admission.admit("10.0.0.1", 10.0, held=4) is None  # refilled, up to the burst
    assert admission.admit("10.0.0.1", 10.0, held=5) is None
    assert admission.admit("10.0.0.1", 10.0, held=6) is Refusal.ACCEPT_RATE


def test_a_refused_socket_takes_no_token() -> None:
    admission = Admission(rate=1.0)
    assert admission.admit("10.0.0.1", 0.0, held=0) is None
    for step in range(1, 9):  # refused every 0.1 s: none of them spends the refill
        assert admission.admit("10.0.0.1", step / 10, held=1) is Refusal.ACCEPT_RATE
    assert admission.admit("10.0.0.1", 1.0, held=1) is None


def test_a_fractional_rate_still_admits_one() -> None:
    admission = Admission(rate=0.5)
    assert admission.admit("10.0.0.1", 0.0, held=0) is None
    assert admission.admit("10.0.0.1", 1.0, held=1) is Refusal.ACCEPT_RATE
    assert admission.admit("10.0.0.1", 2.0, held=1) is None


def test_per_ip_is_checked_before_the_rate_and_spends_no_token() -> None:
    admission = Admission(max_per_source=1, rate=1.0)
    assert admission.admit("10.0.0.1", 0.0, held=0) is None
    assert admission.admit("10.0.0.1", 5.0, held=1) is Refusal.PER_IP
    admission.release("10.0.0.1")
    assert admission.admit("10.0.0.1", 5.0, held=0) is None


def test_refusals_are_said_once_per_interval_per_source_with_the_count() -> None:
    admission = Admission(log_interval=10.0)
    assert admission.refused("10.0.0.1", 0.0) == 1
    assert [admission.refused("10.0.0.1", t) for t in (1.0, 2.0, 9.9)] == [0, 0, 0]
    assert admission.refused("10.0.0.2", 3.0) == 1  # another source has its own interval
    assert admission.refused("10.0.0.1", 10.0) == 4  # this one and the three kept quiet
    assert admission.refused("10.0.0.1", 11.0) == 0


def test_the_tables_stay_bounded_under_many_sources() -> None:
    admission = Admission(rate=1.0, log_interval=1.0)
    for number in range(20 * SWEEP_FLOOR):
        source = f"10.{number >> 16 & 255}.{number >> 8 & 255}.{number & 255}"
        now = number * 0.001  # 1,000 new sources a second, each seen once
        assert admission.admit(source, now, held=0) is None
        admission.release(source)
        admission.refused(source, now)
    sizes = repr(admission)
    assert "sources=0" in sizes
    buckets = int(sizes.split("buckets=")[1].split()[0])
    assert buckets <= 2 * SWEEP_FLOOR  # only the buckets of the last second or so
