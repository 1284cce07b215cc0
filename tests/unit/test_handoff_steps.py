"""The handoff's decisions without I/O: what a failure at each step leaves behind, which
sockets move, what each side accepts when, and the pause."""

from __future__ import annotations

import pytest

from paradoxplex.node.handoff.steps import (
    LIMITS,
    NEW_EXPECTS,
    NO_RETURN,
    OLD_EXPECTS,
    ORDER,
    OUTCOMES,
    Disposition,
    Outcome,
    Pause,
    Step,
    disposition,
    expect,
    outcome,
    talks,
)
from paradoxplex.shared.errors import HandoffError


@pytest.mark.parametrize(
    ("reached", "left"),
    [
        (Step.HELLO, Outcome.UNTOUCHED),
        (Step.PREPARE, Outcome.UNTOUCHED),
        (Step.QUIESCE, Outcome.THAWED),
        (Step.FREEZE, Outcome.THAWED),
        (Step.TRANSFER, Outcome.THAWED),
        (Step.COMMIT, Outcome.THAWED),
        (Step.RELEASE, Outcome.HANDED_OVER),
        (Step.RESUME, Outcome.HANDED_OVER),
        (Step.RELAY, Outcome.HANDED_OVER),
    ],
)
def test_a_failure_before_the_release_leaves_the_old_process_serving(
    reached: Step, left: Outcome
) -> None:
    assert outcome(reached) is left


def test_the_point_of_no_return_comes_after_the_commit() -> None:
    assert ORDER.index(NO_RETURN) == ORDER.index(Step.COMMIT) + 1


def test_every_step_the_old_process_waits_in_is_bounded() -> None:
    for step in (Step.HELLO, Step.PREPARE, Step.QUIESCE, Step.FREEZE, Step.COMMIT):
        assert 0 < LIMITS[step] <= 30


def test_every_failure_outcome_has_a_series() -> None:
    assert set(OUTCOMES) == {"done", "refused", "untouched", "thawed"}


@pytest.mark.parametrize(
    ("facts", "fate"),
    [
        ({"frozen": True, "tls": False, "open": True, "unwritten": 0}, Disposition.MOVE),
        ({"frozen": True, "tls": True, "open": True, "unwritten": 0}, Disposition.KEEP_TLS),
        ({"frozen": False, "tls": True, "open": True, "unwritten": 0}, Disposition.KEEP_TLS),
        (
            {"frozen": False, "tls": False, "open": True, "unwritten": 0},
            Disposition.KEEP_NOT_FROZEN,
        ),
        ({"frozen": True, "tls": False, "open": False, "unwritten": 0}, Disposition.KEEP_CLOSING),
        ({"frozen": True, "tls": False, "open": True, "unwritten": 1}, Disposition.KEEP_UNWRITTEN),
    ],
)
def test_only_open_plain_sockets_with_nothing_unwritten_move(
    facts: dict[str, bool | int], fate: Disposition
) -> None:
    assert disposition(**facts) is fate  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("table", "step", "body", "accepted"),
    [
        (OLD_EXPECTS, Step.HELLO, "hello", True),
        (OLD_EXPECTS, Step.HELLO, "ready", False),
        (OLD_EXPECTS, Step.PREPARE, "ready", True),
        (OLD_EXPECTS, Step.COMMIT, "committed", True),
        (OLD_EXPECTS, Step.COMMIT, "relay", False),
        (NEW_EXPECTS, Step.HELLO, "offer", True),
        (NEW_EXPECTS, Step.HELLO, "refusal", True),
        (NEW_EXPECTS, Step.TRANSFER, "sessions", True),
        (NEW_EXPECTS, Step.TRANSFER, "released", False),
        (NEW_EXPECTS, Step.RELEASE, "released", True),
        (NEW_EXPECTS, Step.RELEASE, None, False),
    ],
)
def test_each_side_accepts_only_what_the_step_expects(
    table: dict[Step, tuple[str, ...]], step: Step, body: str | None, accepted: bool
) -> None:
    if accepted:
        expect(step, body, table)
    else:
        with pytest.raises(HandoffError) as caught:
            expect(step, body, table)
        assert caught.value.step == step.value


def test_the_pause_is_from_the_freeze_to_the_resume() -> None:
    assert Pause(frozen_at=10.0, resumed_at=10.25).seconds == 0.25
    assert Pause(frozen_at=10.0, resumed_at=9.0).seconds == 0.0


@pytest.mark.parametrize(
    ("io", "synced_io", "holds", "first"),
    [
        (0, 0, False, False),  # never said a word
        (500, 500, False, False),  # quiet since the last heartbeat
        (501, 500, False, True),  # talked since
        (500, 500, True, True),  # holds a frame or a reply
    ],
)
def test_the_sockets_that_talk_go_first(io: int, synced_io: int, holds: bool, first: bool) -> None:
    assert talks(io=io, synced_io=synced_io, holds=holds) is first
