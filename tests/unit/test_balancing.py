"""Picking an upstream: round robin fairness, skipping full ones, sticky placement."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import pytest

from paradoxplex.shared.balancing import (
    NO_UPSTREAM,
    ROUTING,
    WAIT,
    Balancer,
    Decision,
    NoUpstream,
    Place,
    RoundRobin,
    Sticky,
    Wait,
)


class Room:
    """``has_room`` that records what it was asked; ``full`` members have no room."""

    def __init__(self, full: Iterable[str] = ()) -> None:
        self.full = set(full)
        self.asked: list[str] = []

    def __call__(self, member: str) -> bool:
        self.asked.append(member)
        return member not in self.full


def placed(decision: Decision) -> str:
    assert isinstance(decision, Place), decision
    return decision.upstream_id


def rotation(members: Iterable[str], picks: int, full: Iterable[str] = ()) -> list[Decision]:
    balancer = RoundRobin()
    balancer.set_members(members)
    room = Room(full)
    return [balancer.pick(room) for _ in range(picks)]


def test_decisions_are_values() -> None:
    assert Place("a") == Place("a")
    assert Place("a") != Place("b")
    assert Wait() == WAIT
    assert NoUpstream() == NO_UPSTREAM


# --- round robin ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("members", "full", "expected"),
    [
        (["a"], [], ["a", "a", "a", "a"]),
        (["a", "b", "c"], [], ["a", "b", "c", "a"]),
        (["c", "a", "b"], [], ["a", "b", "c", "a"]),  # rotation is in sorted order
        (["a", "b", "c"], ["b"], ["a", "c", "a", "c"]),
        (["a", "b", "c"], ["a"], ["b", "c", "b", "c"]),
        (["a", "b", "c"], ["a", "b"], ["c", "c", "c", "c"]),
        (["a", "b", "c"], ["x"], ["a", "b", "c", "a"]),
    ],
)
def test_rotation_order(members: list[str], full: list[str], expected: list[str]) -> None:
    assert [placed(d) for d in rotation(members, len(expected), full)] == expected


@pytest.mark.parametrize("count", [1, 2, 3, 7])
@pytest.mark.parametrize("rounds", [1, 10, 100])
def test_rotation_is_fair(count: int, rounds: int) -> None:
    members = [f"u{i}" for i in range(count)]
    tally = Counter(placed(d) for d in rotation(members, count * rounds))
    assert tally == dict.fromkeys(members, rounds)


@pytest.mark.parametrize("full", [["u1"], ["u0", "u3"], ["u1", "u2", "u4"]])
def test_rotation_is_fair_among_members_with_room(full: list[str]) -> None:
    members = [f"u{i}" for i in range(5)]
    with_room = [m for m in members if m not in full]
    tally = Counter(placed(d) for d in rotation(members, len(with_room) * 50, full))
    assert tally == dict.fromkeys(with_room, 50)


def test_duplicate_members_get_no_double_share() -> None:
    tally = Counter(placed(d) for d in rotation(["a", "a", "b"], 100))
    assert tally == {"a": 50, "b": 50}


@pytest.mark.parametrize("members", [[], ()])
def test_no_members_is_no_upstream(members: list[str]) -> None:
    room = Room()
    assert RoundRobin().pick(room) is NO_UPSTREAM
    balancer = RoundRobin()
    balancer.set_members(members)
    assert balancer.pick(room) is NO_UPSTREAM
    assert room.asked == []


@pytest.mark.parametrize("members", [["a"], ["a", "b"], ["a", "b", "c", "d"]])
def test_all_full_is_wait_after_asking_each_once(members: list[str]) -> None:
    balancer = RoundRobin()
    balancer.set_members(members)
    room = Room(full=members)
    assert balancer.pick(room) is WAIT
    assert sorted(room.asked) == sorted(members)


def test_wait_does_not_move_the_rotation() -> None:
    balancer = RoundRobin()
    balancer.set_members(["a", "b", "c"])
    assert placed(balancer.pick(Room())) == "a"
    assert balancer.pick(Room(full=["a", "b", "c"])) is WAIT
    assert placed(balancer.pick(Room())) == "b"


def test_asks_from_the_next_member_on() -> None:
    balancer = RoundRobin()
    balancer.set_members(["a", "b", "c"])
    balancer.pick(Room())
    room = Room(full=["b", "c"])
    assert placed(balancer.pick(room)) == "a"
    assert room.asked == ["b", "c", "a"]


def test_stops_asking_at_the_first_with_room() -> None:
    balancer = RoundRobin()
    balancer.set_members(["a", "b", "c"])
    room = Room()
    balancer.pick(room)
    assert room.asked == ["a"]


def test_shrinking_membership_keeps_picking() -> None:
    balancer = RoundRobin()
    balancer.set_members(["a", "b", "c"])
    balancer.pick(Room())
    balancer.pick(Room())
    balancer.set_members(["a"])
    assert [placed(balancer.pick(Room())) for _ in range(3)] == ["a", "a", "a"]
    balancer.set_members([])
    assert balancer.pick(Room()) is NO_UPSTREAM


def test_members_and_repr() -> None:
    balancer = RoundRobin()
    balancer.set_members(["b", "a"])
    assert balancer.members == ("a", "b")
    balancer.pick(Room())
    assert repr(balancer) == "<RoundRobin members=2 next=1>"


# --- sticky ---------------------------------------------------------------------------------


def sticky(*members: str) -> Sticky:
    balancer = Sticky()
    balancer.set_members(members)
    return balancer


def test_sticky_keeps_its_placement() -> None:
    balancer = sticky("a", "b", "c")
    first = placed(balancer.pick("s1", Room()))
    assert [placed(balancer.pick("s1", Room())) for _ in range(10)] == [first] * 10
    assert balancer.assigned("s1") == first


def test_sticky_spreads_sessions_by_round_robin() -> None:
    balancer = sticky("a", "b", "c")
    assert [placed(balancer.pick(f"s{i}", Room())) for i in range(6)] == list("abcabc")


def test_sticky_waits_while_its_member_is_full() -> None:
    balancer = sticky("a", "b")
    assert placed(balancer.pick("s1", Room())) == "a"
    room = Room(full=["a"])
    assert balancer.pick("s1", room) is WAIT
    assert room.asked == ["a"]  # b has room, but s1 does not move
    assert balancer.assigned("s1") == "a"
    assert placed(balancer.pick("s1", Room())) == "a"


def test_sticky_moves_only_when_its_member_leaves() -> None:
    balancer = sticky("a", "b", "c")
    assert placed(balancer.pick("s1", Room())) == "a"
    balancer.set_members(["a", "b", "c", "d"])
    assert placed(balancer.pick("s1", Room())) == "a"
    balancer.set_members(["b", "c", "d"])
    moved = placed(balancer.pick("s1", Room()))
    assert moved != "a"
    assert balancer.assigned("s1") == moved
    balancer.set_members(["a", "b", "c", "d"])  # a is back: s1 stays where it moved
    assert placed(balancer.pick("s1", Room())) == moved


def test_sticky_member_leaves_and_the_rest_are_full() -> None:
    balancer = sticky("a", "b")
    assert placed(balancer.pick("s1", Room())) == "a"
    balancer.set_members(["b"])
    assert balancer.pick("s1", Room(full=["b"])) is WAIT
    assert placed(balancer.pick("s1", Room())) == "b"


def test_sticky_first_placement_skips_full_members() -> None:
    balancer = sticky("a", "b")
    assert placed(balancer.pick("s1", Room(full=["a"]))) == "b"
    assert balancer.pick("s1", Room(full=["b"])) is WAIT


@pytest.mark.parametrize(
    ("members", "full", "expected"),
    [([], [], NO_UPSTREAM), (["a"], ["a"], WAIT)],
)
def test_sticky_unplaced_session(members: list[str], full: list[str], expected: Decision) -> None:
    balancer = sticky(*members)
    assert balancer.pick("s1", Room(full)) == expected
    assert balancer.assigned("s1") is None


def test_sticky_forget() -> None:
    balancer = sticky("a", "b")
    assert placed(balancer.pick("s1", Room())) == "a"
    balancer.forget("s1")
    balancer.forget("never-seen")
    assert balancer.assigned("s1") is None
    assert placed(balancer.pick("s1", Room())) == "b"
    assert repr(balancer) == "<Sticky sessions=1 <RoundRobin members=2 next=0>>"


# --- the policy a node runs -----------------------------------------------------------------


def test_policies() -> None:
    assert ROUTING == ("round-robin", "sticky")
    assert Balancer().policy == "round-robin"


@pytest.mark.parametrize("policy", ["random", "", "Sticky"])
def test_unknown_policy(policy: str) -> None:
    with pytest.raises(ValueError, match="unknown routing"):
        Balancer(policy)


@pytest.mark.parametrize(
    ("policy", "expected"),
    [("round-robin", ["a", "b", "c", "a"]), ("sticky", ["a", "a", "a", "a"])],
)
def test_policy_for_one_session(policy: str, expected: list[str]) -> None:
    balancer = Balancer(policy)
    balancer.set_members(["a", "b", "c"])
    assert [placed(balancer.pick("s1", Room())) for _ in expected] == expected


@pytest.mark.parametrize(("policy", "expected"), [("round-robin", WAIT), ("sticky", WAIT)])
def test_policy_when_full(policy: str, expected: Decision) -> None:
    balancer = Balancer(policy)
    balancer.set_members(["a", "b"])
    balancer.pick("s1", Room())
    decision = balancer.pick("s1", Room(full=["a"]))
    if policy == "round-robin":
        assert placed(decision) == "b"
    else:
        assert decision == expected
    assert balancer.pick("s1", Room(full=["a", "b"])) == expected


def test_balancer_forget_and_repr() -> None:
    balancer = Balancer("sticky")
    balancer.set_members(["a", "b"])
    assert placed(balancer.pick("s1", Room())) == "a"
    balancer.forget("s1")
    assert placed(balancer.pick("s1", Room())) == "b"
    assert repr(balancer).startswith("<Balancer sticky <Sticky sessions=1")
