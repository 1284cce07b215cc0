"""Routing an upstream's reply: local write, forward to the owner, or undeliverable."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from paradoxplex.shared.routing import (
    Action,
    Forward,
    LookUp,
    PublishBroadcast,
    RetryLater,
    Undeliverable,
    WriteLocal,
    route_broadcast,
    route_reply,
)
from paradoxplex.shared.sessions import BroadcastTarget, SessionInfo, SessionState

A = "00000000-0000-4000-8000-00000000000a"
B = "00000000-0000-4000-8000-00000000000b"
C = "00000000-0000-4000-8000-00000000000c"
D = "00000000-0000-4000-8000-00000000000d"


class Local:
    """``is_local`` that records each question."""

    def __init__(self, *held: str) -> None:
        self.held = set(held)
        self.asked: list[str] = []

    def __call__(self, client_uuid: str) -> bool:
        self.asked.append(client_uuid)
        return client_uuid in self.held


@pytest.mark.parametrize(
    ("held", "owner", "expected"),
    [
        ([A], None, WriteLocal(A, b"hi")),
        ([A], "node-b", WriteLocal(A, b"hi")),  # held here wins over a stale owner
        ([], "node-b", Forward(A, "node-b", b"hi")),
        ([B], "node-c", Forward(A, "node-c", b"hi")),
        ([], None, Undeliverable(A, "unknown socket")),
        ([B, C], None, Undeliverable(A, "unknown socket")),
    ],
)
def test_route_reply(held: list[str], owner: str | None, expected: Action) -> None:
    is_local = Local(*held)
    assert route_reply(A, b"hi", is_local=is_local, owner=owner) == expected
    assert is_local.asked == [A]


@pytest.mark.parametrize("payload", [b"", b"\x00" * 3, b"x" * 70_000])
def test_route_reply_carries_the_payload_unchanged(payload: bytes) -> None:
    action = route_reply(A, payload, is_local=Local(A), owner=None)
    assert isinstance(action, WriteLocal)
    assert action.payload is payload


# --- broadcast ------------------------------------------------------------------------------

SESSIONS = [
    SessionInfo(A, "me", "r", 0.0, SessionState.ACTIVE, {"team": "blue"}),
    SessionInfo(B, "me", "r", 0.0, SessionState.ACTIVE, {"team": "red"}),
    SessionInfo(C, "me", "r", 0.0, SessionState.PAUSED, {"team": "blue"}),
    SessionInfo(D, "me", "r", 0.0, SessionState.PAUSED, {}),
]
REACHED: dict[tuple[BroadcastTarget, tuple[str, str] | None], list[str]] = {
    (BroadcastTarget.ALL, None): [A, B, C, D],
    (BroadcastTarget.ALL, ("team", "blue")): [A, C],
    (BroadcastTarget.ALL, ("team", "green")): [],
    (BroadcastTarget.ACTIVE, None): [A, B],
    (BroadcastTarget.ACTIVE, ("team", "blue")): [A],
    (BroadcastTarget.ACTIVE, ("team", "green")): [],
    (BroadcastTarget.PAUSED, None): [C, D],
    (BroadcastTarget.PAUSED, ("team", "blue")): [C],
    (BroadcastTarget.PAUSED, ("team", "green")): [],
}
CASES = [
    pytest.param(target, label, fleet, id=f"{target.value}-{label}-{'fleet' if fleet else 'alone'}")
    for (target, label), fleet in itertools.product(REACHED, [False, True])
]


def once(items: list[SessionInfo]) -> Iterator[SessionInfo]:
    """A one-shot iterable: the router must not walk the sessions twice."""
    yield from items


@pytest.mark.parametrize(("target", "label", "fleet"), CASES)
def test_route_broadcast(
    target: BroadcastTarget, label: tuple[str, str] | None, fleet: bool
) -> None:
    actions = route_broadcast(once(SESSIONS), target, label, b"all", fleet=fleet)
    writes = [a for a in actions if isinstance(a, WriteLocal)]
    publishes = [a for a in actions if isinstance(a, PublishBroadcast)]
    assert [w.client_uuid for w in writes] == REACHED[target, label]
    assert all(w.payload == b"all" for w in writes)
    assert publishes == ([PublishBroadcast(target, label, b"all")] if fleet else [])
    assert len(writes) + len(publishes) == len(actions)


@pytest.mark.parametrize(("fleet", "expected"), [(False, 0), (True, 1)])
def test_broadcast_with_no_local_sessions(fleet: bool, expected: int) -> None:
    actions = route_broadcast([], BroadcastTarget.ALL, None, b"x", fleet=fleet)
    assert len(actions) == expected
    assert all(isinstance(a, PublishBroadcast) for a in actions)


def test_publish_comes_before_the_local_writes() -> None:
    """The other nodes fan out while this one writes to its own sockets."""
    actions = route_broadcast(SESSIONS, BroadcastTarget.ALL, None, b"x", fleet=True)
    assert isinstance(actions[0], PublishBroadcast)
    assert all(isinstance(a, WriteLocal) for a in actions[1:])


def test_the_table_covers_every_target() -> None:
    assert {target for target, _ in REACHED} == set(BroadcastTarget)


@pytest.mark.parametrize(
    ("looked_up", "attempt", "may_retry", "expected"),
    [
        (False, 0, True, LookUp(A, b"hi")),
        (False, 3, False, LookUp(A, b"hi")),  # a look-up comes before any retry
        (True, 0, True, RetryLater(A, b"hi", 0.05, 1)),
        (True, 1, True, RetryLater(A, b"hi", 0.1, 2)),
        (True, 4, True, RetryLater(A, b"hi", 0.8, 5)),
        (True, 5, True, Undeliverable(A, "unknown socket")),
        (True, 0, False, Undeliverable(A, "unknown socket")),  # too many replies waiting
    ],
)
def test_route_reply_in_a_fleet_looks_up_then_retries(
    looked_up: bool, attempt: int, may_retry: bool, expected: Action
) -> None:
    action = route_reply(
        A,
        b"hi",
        is_local=Local(),
        owner=None,
        fleet=True,
        looked_up=looked_up,
        attempt=attempt,
        may_retry=may_retry,
    )
    assert action == expected


def test_route_reply_in_a_fleet_prefers_local_then_the_known_owner() -> None:
    assert route_reply(A, b"x", is_local=Local(A), owner="n2", fleet=True) == WriteLocal(A, b"x")
    assert route_reply(A, b"x", is_local=Local(), owner="n2", fleet=True) == Forward(A, "n2", b"x")


def test_retries_add_up_to_about_one_and_a_half_seconds() -> None:
    waits = []
    attempt = 0
    while isinstance(action := route_again(attempt), RetryLater):
        waits.append(action.delay)
        attempt = action.attempt
    assert waits == [0.05, 0.1, 0.2, 0.4, 0.8]
    assert 1.0 <= sum(waits) <= 2.0


def route_again(attempt: int) -> Action:
    """A look-up found no owner again after ``attempt`` retries."""
    local = Local()
    return route_reply(
        A, b"hi", is_local=local, owner=None, fleet=True, looked_up=True, attempt=attempt
    )
