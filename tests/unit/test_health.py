"""The upstream health table, and one node's tracker of one upstream."""

from __future__ import annotations

import itertools

import pytest

from paradoxplex.shared.health import (
    TRANSITIONS,
    Health,
    HealthTracker,
    Probe,
    in_rotation,
    next_health,
)

H, P = Health, Probe

# Written out independently of the module: a new row there must be added here too.
EXPECTED: list[tuple[Health, Probe, Health]] = [
    (H.CONNECTING, P.READY_OK, H.READY),
    (H.CONNECTING, P.READY_FAILED, H.BACKOFF),
    (H.CONNECTING, P.STREAM_BROKEN, H.BACKOFF),
    (H.CONNECTING, P.DRAIN, H.DRAINING),
    (H.CONNECTING, P.REMOVE, H.REMOVED),
    (H.READY, P.LIVE_MISSED, H.BACKOFF),
    (H.READY, P.STREAM_BROKEN, H.BACKOFF),
    (H.READY, P.DRAIN, H.DRAINING),
    (H.READY, P.REMOVE, H.REMOVED),
    (H.BACKOFF, P.RETRY, H.CONNECTING),
    (H.BACKOFF, P.DRAIN, H.DRAINING),
    (H.BACKOFF, P.REMOVE, H.REMOVED),
    (H.DRAINING, P.REMOVE, H.REMOVED),
]
KNOWN = {(state, probe) for state, probe, _ in EXPECTED}
UNKNOWN = [pair for pair in itertools.product(Health, Probe) if pair not in KNOWN]


def ident(value: object) -> str:
    return value.name if isinstance(value, Health | Probe) else str(value)


@pytest.mark.parametrize(("state", "probe", "new"), EXPECTED, ids=ident)
def test_every_row(state: Health, probe: Probe, new: Health) -> None:
    assert next_health(state, probe) is new
    assert TRANSITIONS[state][probe] is new


def test_table_has_exactly_these_rows() -> None:
    rows = {(s, p, n) for s, row in TRANSITIONS.items() for p, n in row.items()}
    assert rows == set(EXPECTED)
    assert set(TRANSITIONS) == set(Health)


@pytest.mark.parametrize(("state", "probe"), UNKNOWN, ids=ident)
def test_unknown_pairs_keep_the_state(state: Health, probe: Probe) -> None:
    assert next_health(state, probe) is state


@pytest.mark.parametrize("probe", list(Probe), ids=ident)
def test_removed_is_final(probe: Probe) -> None:
    assert next_health(H.REMOVED, probe) is H.REMOVED


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (H.CONNECTING, False),
        (H.READY, True),
        (H.BACKOFF, False),
        (H.DRAINING, False),
        (H.REMOVED, False),
    ],
    ids=ident,
)
def test_in_rotation(state: Health, expected: bool) -> None:
    assert in_rotation(state) is expected


# --- tracker --------------------------------------------------------------------------------


def tracker_in(state: Health, *, now: float = 0.0) -> HealthTracker:
    paths = {
        H.CONNECTING: [],
        H.READY: [P.READY_OK],
        H.BACKOFF: [P.READY_FAILED],
        H.DRAINING: [P.DRAIN],
        H.REMOVED: [P.REMOVE],
    }
    tracker = HealthTracker(now=now)
    for probe in paths[state]:
        tracker.apply(probe, now=now)
    assert tracker.state is state
    return tracker


def test_tracker_starts_connecting() -> None:
    tracker = HealthTracker(now=5.0)
    assert (tracker.state, tracker.since, tracker.last_live, tracker.failures) == (
        H.CONNECTING,
        5.0,
        5.0,
        0,
    )
    assert repr(tracker) == "<HealthTracker connecting failures=0>"


@pytest.mark.parametrize(("state", "probe", "new"), EXPECTED, ids=ident)
def test_tracker_follows_every_row(state: Health, probe: Probe, new: Health) -> None:
    tracker = tracker_in(state)
    assert tracker.apply(probe, now=9.0) is True
    assert (tracker.state, tracker.since) == (new, 9.0)


@pytest.mark.parametrize(("state", "probe"), UNKNOWN, ids=ident)
def test_tracker_unknown_pair_changes_nothing(state: Health, probe: Probe) -> None:
    tracker = tracker_in(state, now=1.0)
    assert tracker.apply(probe, now=9.0) is False
    assert (tracker.state, tracker.since) == (state, 1.0)


@pytest.mark.parametrize(
    ("probes", "failures"),
    [
        ([P.READY_FAILED], 1),
        ([P.READY_FAILED, P.RETRY, P.STREAM_BROKEN], 2),
        ([P.READY_OK, P.LIVE_MISSED, P.RETRY, P.READY_FAILED], 2),
        ([P.READY_FAILED, P.RETRY, P.READY_OK], 0),
        ([P.READY_OK, P.LIVE_OK, P.DRAIN], 0),
    ],
)
def test_failures_count_until_ready(probes: list[Probe], failures: int) -> None:
    tracker = HealthTracker(now=0.0)
    for probe in probes:
        tracker.apply(probe, now=1.0)
    assert tracker.failures == failures


@pytest.mark.parametrize(
    ("live_at", "now", "timeout", "overdue"),
    [
        (None, 10.0, 30.0, False),
        (None, 30.0, 30.0, False),  # exactly the timeout: not yet
        (None, 30.5, 30.0, True),
        (20.0, 50.0, 30.0, False),
        (20.0, 50.1, 30.0, True),
        (20.0, 20.0, 0.1, False),
    ],
)
def test_live_overdue_when_ready(
    live_at: float | None, now: float, timeout: float, overdue: bool
) -> None:
    tracker = HealthTracker(now=0.0)
    tracker.apply(P.READY_OK, now=0.0)
    if live_at is not None:
        tracker.apply(P.LIVE_OK, now=live_at)
    assert tracker.live_overdue(now=now, alive_timeout=timeout) is overdue


@pytest.mark.parametrize("state", [H.CONNECTING, H.BACKOFF, H.DRAINING, H.REMOVED], ids=ident)
def test_live_overdue_only_when_ready(state: Health) -> None:
    tracker = tracker_in(state)
    assert tracker.live_overdue(now=1e9, alive_timeout=1.0) is False


def test_ready_restarts_the_live_clock() -> None:
    tracker = HealthTracker(now=0.0)
    tracker.apply(P.READY_FAILED, now=1.0)
    tracker.apply(P.RETRY, now=100.0)
    tracker.apply(P.READY_OK, now=200.0)
    assert tracker.last_live == 200.0
    assert not tracker.live_overdue(now=229.0, alive_timeout=30.0)
    assert tracker.live_overdue(now=231.0, alive_timeout=30.0)


def test_overdue_then_live_missed_leaves_rotation() -> None:
    tracker = HealthTracker(now=0.0)
    tracker.apply(P.READY_OK, now=0.0)
    assert in_rotation(tracker.state)
    assert tracker.live_overdue(now=31.0, alive_timeout=30.0)
    assert tracker.apply(P.LIVE_MISSED, now=31.0)
    assert not in_rotation(tracker.state)
    assert repr(tracker) == "<HealthTracker backoff failures=1>"
