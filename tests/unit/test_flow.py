"""A socket's flow decisions, fed without an event loop: reading, held frames, writes, deadlines."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from paradoxplex.shared.flow import (
    CLOSE_FULL,
    DROP_CLOSED,
    DROP_FULL,
    WRITE,
    Deadline,
    Flow,
    FlowLimits,
    FlowState,
    Pause,
    Reading,
    Verdict,
)

MIB = 1024 * 1024


def backpressured(flow: Flow, now: float = 0.0) -> Reading | None:
    """Hold two frames and place none: what every full link does."""
    flow.hold([b"a", b"b"])
    return flow.placed(0, now)


# --- reading: three reasons that add up ---------------------------------------------------

PAUSE, RESUME = Reading.PAUSE, Reading.RESUME


@pytest.mark.parametrize(
    ("steps", "changes", "reasons"),
    [
        (["admin"], [PAUSE], Pause.ADMIN),
        (["admin", "unadmin"], [PAUSE, RESUME], Pause.NONE),
        (["admin", "admin"], [PAUSE, None], Pause.ADMIN),
        (["unadmin"], [None], Pause.NONE),
        (["full"], [PAUSE], Pause.BACKPRESSURE),
        (["full", "room"], [PAUSE, RESUME], Pause.NONE),
        (["room"], [None], Pause.NONE),
        (["eof"], [PAUSE], Pause.END_OF_INPUT),
        # a resume does not undo the other reasons
        (["admin", "full", "unadmin"], [PAUSE, None, None], Pause.BACKPRESSURE),
        (["full", "admin", "room"], [PAUSE, None, None], Pause.ADMIN),
        (["admin", "full", "room", "unadmin"], [PAUSE, None, None, RESUME], Pause.NONE),
        (["admin", "eof", "unadmin"], [PAUSE, None, None], Pause.END_OF_INPUT),
        (["full", "eof", "room"], [PAUSE, None, None], Pause.END_OF_INPUT),
    ],
)
def test_reading_stops_for_any_reason_and_resumes_when_none_holds(
    steps: list[str], changes: list[Reading | None], reasons: Pause
) -> None:
    flow = Flow()
    actions = {
        "admin": lambda: flow.set_paused(True, 0.0),
        "unadmin": lambda: flow.set_paused(False, 0.0),
        "full": lambda: backpressured(flow),
        "room": lambda: flow.placed(len(flow.held), 0.0),
        "eof": lambda: flow.end_of_input(0.0),
    }
    assert [actions[step]() for step in steps] == changes
    assert flow.paused == reasons
    assert flow.reading == (reasons == Pause.NONE)


@pytest.mark.parametrize("close", ["close", "abort", "lost"])
def test_a_closing_flow_leaves_reading_as_it_is(close: str) -> None:
    flow = Flow()
    if close == "close":
        flow.close("x", buffered=0, now=0.0)
    elif close == "abort":
        flow.abort("x")
    else:
        flow.lost(error=False)
    assert flow.set_paused(True, 0.0) is None
    assert backpressured(flow) is None
    assert flow.end_of_input(0.0) is None
    assert flow.reading


# --- held frames: one owner ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("held", "placed", "requeued", "expected"),
    [
        ([b"1", b"2", b"3"], 0, [], [b"1", b"2", b"3"]),
        ([b"1", b"2", b"3"], 2, [], [b"3"]),
        ([b"1", b"2", b"3"], 3, [], []),
        ([b"3"], 0, [b"1", b"2"], [b"1", b"2", b"3"]),  # given back: to the front, in order
        ([], 0, [b"1", b"2"], [b"1", b"2"]),
    ],
)
def test_held_frames_leave_from_the_front_and_come_back_to_it(
    held: list[bytes], placed: int, requeued: list[bytes], expected: list[bytes]
) -> None:
    flow = Flow()
    flow.hold(held)
    flow.placed(placed, 0.0)
    flow.requeue(requeued)
    assert list(flow.held) == expected


def test_drop_all_counts_the_held_frames_and_clears_the_hold_deadline() -> None:
    flow = Flow(FlowLimits(hold_timeout=5.0))
    backpressured(flow)
    assert flow.expired(5.0) == [Deadline.HOLD, Deadline.PROBE]
    backpressured(flow, now=10.0)
    assert flow.drop_all() == 4
    assert flow.drop_all() == 0
    assert list(flow.held) == []
    assert flow.next_deadline() is not None  # the backpressure probe, until placed again
    assert Deadline.HOLD not in flow.expired(100.0)


def test_flows_share_their_limits_and_hold_no_list_while_nothing_is_held() -> None:
    limits = FlowLimits(frames_per_turn=2, hold_timeout=5.0)
    flow, other = Flow(limits), Flow(limits)
    assert flow.limits is other.limits
    assert flow.held == ()  # idle: no list
    assert flow.placed(0, 0.0) is None
    flow.hold([b"1", b"2", b"3"])
    assert flow.allowance(0.0) == 2  # the shared cap still holds
    assert flow.placed(2, 0.0) is PAUSE
    flow.requeue([b"0"])
    assert list(flow.held) == [b"0", b"3"]
    assert flow.placed(2, 0.0) is RESUME
    assert flow.held == ()  # drained: the list is let go
    flow.requeue([b"4"])  # a link gave one back to an idle flow
    flow.hold([b"5"])
    assert list(flow.held) == [b"4", b"5"]
    assert other.held == ()


@pytest.mark.parametrize("overflow", ["ignore", ""])
def test_limits_refuse_an_unknown_overflow_policy(overflow: str) -> None:
    with pytest.raises(ValueError, match="overflow"):
        FlowLimits(overflow=overflow)


# --- the write budget and the overflow policy ---------------------------------------------


@pytest.mark.parametrize(
    ("overflow", "buffered", "size", "verdict"),
    [
        ("close", 0, 10, WRITE),
        ("close", 0, 3 * MIB, WRITE),  # an empty buffer takes any reply
        ("close", MIB - 10, 10, WRITE),  # exactly the budget
        ("close", MIB - 10, 11, CLOSE_FULL),
        ("close", 1, MIB, CLOSE_FULL),
        ("drop", 0, 3 * MIB, WRITE),
        ("drop", MIB - 10, 10, WRITE),
        ("drop", MIB - 10, 11, DROP_FULL),
    ],
)
def test_write_budget(overflow: str, buffered: int, size: int, verdict: Verdict) -> None:
    assert Flow(FlowLimits(overflow=overflow)).write(buffered, size) == verdict


def test_overflow_close_closes_and_drops_every_later_reply() -> None:
    flow = Flow(FlowLimits(overflow="close", write_buffer=100))
    assert flow.write(90, 20) == CLOSE_FULL
    assert (flow.state, flow.reason) == (FlowState.CLOSING, "write buffer full")
    assert [flow.write(0, 1) for _ in range(3)] == [DROP_CLOSED] * 3
    flow.lost(error=False)
    assert flow.write(0, 1) == DROP_CLOSED
    assert flow.reason == "write buffer full"


@pytest.mark.parametrize(
    "close",
    [
        lambda f: f.close("by admin", buffered=0, now=0.0),
        lambda f: f.abort("by admin"),
        lambda f: f.lost(error=True),
    ],
    ids=["closing", "aborted", "closed"],
)
def test_a_reply_to_a_socket_that_is_not_open_is_a_counted_drop(
    close: Callable[[Flow], object],
) -> None:
    flow = Flow()
    close(flow)
    assert flow.write(0, 10) == DROP_CLOSED


def test_the_overflow_policy_is_checked() -> None:
    with pytest.raises(ValueError, match="overflow"):
        Flow(FlowLimits(overflow="ignore"))


# --- closing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("steps", "state", "reason"),
    [
        (["close:a"], FlowState.CLOSING, "a"),
        (["close:a", "close:b"], FlowState.CLOSING, "a"),
        (["abort:a", "close:b"], FlowState.CLOSING, "a"),
        (["close:a", "abort:b"], FlowState.CLOSING, "a"),
        (["close:a", "lost"], FlowState.CLOSED, "a"),
        (["lost"], FlowState.CLOSED, "client closed"),
        (["lost-error"], FlowState.CLOSED, "connection error"),
    ],
)
def test_the_first_close_reason_stays(steps: list[str], state: FlowState, reason: str) -> None:
    flow = Flow()
    for step in steps:
        kind, _, why = step.partition(":")
        if kind == "close":
            flow.close(why, buffered=0, now=0.0)
        elif kind == "abort":
            flow.abort(why)
        else:
            flow.lost(error=kind == "lost-error")
    assert (flow.state, flow.reason) == (state, reason)


def test_close_says_whether_it_started_closing() -> None:
    flow = Flow()
    assert flow.close("a", buffered=0, now=0.0)
    assert not flow.close("b", buffered=0, now=0.0)


# --- deadlines ----------------------------------------------------------------------------


def test_no_deadline_by_default() -> None:
    flow = Flow()
    assert flow.next_deadline() is None
    assert flow.expired(1e9) == []


@pytest.mark.parametrize(
    ("last_io", "now", "due"),
    [(0.0, 9.9, []), (0.0, 10.0, [Deadline.IDLE]), (5.0, 14.9, []), (5.0, 15.0, [Deadline.IDLE])],
)
def test_the_idle_deadline_follows_the_last_io(
    last_io: float, now: float, due: list[Deadline]
) -> None:
    flow = Flow(FlowLimits(idle_timeout=10.0), now=0.0)
    flow.touch(last_io)
    assert flow.next_deadline() == last_io + 10.0
    assert flow.expired(now) == due


def test_the_hold_deadline_is_armed_once_and_cleared_when_nothing_is_held() -> None:
    flow = Flow(FlowLimits(hold_timeout=30.0))
    backpressured(flow, now=1.0)
    flow.hold([b"c"])
    flow.placed(1, now=20.0)  # some placed, some still held: the first deadline stands
    assert flow.expired(30.9) == [Deadline.PROBE]
    assert Deadline.HOLD in flow.expired(31.0)
    assert Deadline.HOLD not in flow.expired(100.0)  # reported once
    flow.placed(len(flow.held), now=100.0)
    flow.hold([b"d"])
    flow.placed(0, now=200.0)  # held again: a new deadline
    assert flow.next_deadline() == 200.5  # the probe first
    assert Deadline.HOLD in flow.expired(230.0)


def test_placing_everything_clears_the_hold_deadline() -> None:
    flow = Flow(FlowLimits(hold_timeout=30.0))
    backpressured(flow)
    flow.placed(2, now=1.0)
    assert flow.next_deadline() is None
    assert flow.expired(100.0) == []


@pytest.mark.parametrize(
    ("pause", "probed"),
    [("admin", True), ("full", True), ("eof", False), ("none", False)],
)
def test_a_paused_socket_is_probed_while_reading_is_paused(pause: str, probed: bool) -> None:
    flow = Flow(FlowLimits(probe_interval=0.5))
    if pause == "admin":
        flow.set_paused(True, 1.0)
    elif pause == "full":
        backpressured(flow, now=1.0)
    elif pause == "eof":
        flow.end_of_input(1.0)
    assert (Deadline.PROBE in flow.expired(1.5)) == probed
    assert (Deadline.PROBE in flow.expired(2.0)) == probed  # again, every interval


def test_probing_stops_when_reading_resumes() -> None:
    flow = Flow(FlowLimits(probe_interval=0.5))
    flow.set_paused(True, 0.0)
    flow.set_paused(False, 0.1)
    assert flow.next_deadline() is None


@pytest.mark.parametrize("seen", ["eof", "probe"])
def test_a_client_that_half_closed_gets_linger_seconds(seen: str) -> None:
    flow = Flow(FlowLimits(linger=1.0, probe_interval=0.5))
    flow.set_paused(True, 0.0)
    if seen == "eof":
        flow.end_of_input(2.0)
    else:
        flow.peer_closed(2.0)
    assert flow.expired(2.9) == ([Deadline.PROBE] if seen == "eof" else [])
    assert Deadline.LINGER in flow.expired(3.0)


def test_the_first_end_of_input_sets_the_linger_deadline() -> None:
    flow = Flow(FlowLimits(linger=1.0))
    flow.peer_closed(0.0)
    flow.end_of_input(0.7)  # the transport read the EOF after an admin resume
    assert flow.next_deadline() == 1.0


@pytest.mark.parametrize(("buffered", "deadline"), [(0, None), (10, 5.0)])
def test_a_close_with_bytes_buffered_is_flushed_for_a_bounded_time(
    buffered: int, deadline: float | None
) -> None:
    flow = Flow(FlowLimits(flush_timeout=5.0, idle_timeout=1.0, hold_timeout=1.0, linger=1.0))
    backpressured(flow)
    flow.end_of_input(0.0)
    flow.close("by admin", buffered=buffered, now=0.0)
    assert flow.next_deadline() == deadline  # while closing, only the flush deadline counts
    assert flow.expired(4.9) == []
    assert flow.expired(5.0) == ([Deadline.FLUSH] if buffered else [])
    assert flow.expired(6.0) == []


def test_a_closed_flow_has_no_deadline() -> None:
    flow = Flow(FlowLimits(idle_timeout=1.0))
    flow.close("x", buffered=10, now=0.0)
    flow.lost(error=False)
    assert flow.next_deadline() is None
    assert flow.expired(100.0) == []


def test_deadlines_due_together_come_in_order() -> None:
    flow = Flow(FlowLimits(hold_timeout=1.0, idle_timeout=1.0, linger=1.0, probe_interval=1.0))
    backpressured(flow)
    flow.peer_closed(0.0)
    assert flow.expired(1.0) == [Deadline.HOLD, Deadline.IDLE, Deadline.LINGER]


# --- repr ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setup", "text"),
    [
        ("new", "<Flow open reading held=0>"),
        ("admin", "<Flow open paused=admin held=0>"),
        ("full", "<Flow open paused=backpressure held=2>"),
        ("admin+full+eof", "<Flow open paused=admin|backpressure|end_of_input held=2>"),
        ("close", "<Flow closing reading held=0 reason='idle timeout'>"),
    ],
)
def test_repr_summarises_the_state(setup: str, text: str) -> None:
    flow = Flow()
    if "admin" in setup:
        flow.set_paused(True, 0.0)
    if "full" in setup:
        backpressured(flow)
    if "eof" in setup:
        flow.end_of_input(0.0)
    if setup == "close":
        flow.close("idle timeout", buffered=0, now=0.0)
    assert repr(flow) == text


# --- pacing: frames per turn, frames per second ---------------------------------------------


def test_frames_past_this_turns_allowance_wait_for_the_next_turn_reading_paused() -> None:
    flow = Flow(FlowLimits(frames_per_turn=2, turn=0.001))
    flow.hold([b"1", b"2", b"3", b"4", b"5"])
    assert flow.allowance(0.0) == 2
    assert flow.placed(2, 0.0) is PAUSE
    assert flow.paused == Pause.PACED
    assert flow.next_deadline() == 0.001  # no hold deadline: nothing waits for a link
    assert flow.expired(0.001) == [Deadline.PACE]
    assert flow.allowance(0.001) == 2
    assert flow.placed(2, 0.001) is None
    assert flow.allowance(0.002) == 2
    assert flow.placed(1, 0.002) is RESUME  # the last one: nothing held
    assert (flow.paused, flow.next_deadline()) == (Pause.NONE, None)


def test_a_full_link_within_the_allowance_is_backpressure_with_its_hold_deadline() -> None:
    flow = Flow(FlowLimits(frames_per_turn=10, hold_timeout=30.0))
    flow.hold([b"1", b"2", b"3"])
    assert flow.allowance(0.0) == 10
    assert flow.placed(1, 0.0) is PAUSE
    assert flow.paused == Pause.BACKPRESSURE
    assert Deadline.HOLD in flow.expired(30.0)


def test_the_rate_is_a_token_bucket_and_the_rest_waits_for_the_next_token() -> None:
    flow = Flow(FlowLimits(rate=10.0))  # ten a second, a burst of ten
    flow.hold([b"x"] * 15)
    assert flow.allowance(0.0) == 10
    assert flow.placed(10, 0.0) is PAUSE
    assert flow.waiting_for_rate
    assert flow.next_deadline() == pytest.approx(0.1)
    assert flow.expired(0.1) == [Deadline.PACE]
    assert flow.allowance(0.1) == 1
    assert flow.placed(1, 0.1) is None
    assert flow.allowance(0.55) == 4  # 0.45 s at 10/s
    assert flow.placed(4, 0.55) is RESUME
    assert not flow.waiting_for_rate


def test_placing_without_asking_the_allowance_is_backpressure() -> None:
    flow = Flow(FlowLimits(frames_per_turn=2))
    flow.hold([b"1", b"2", b"3"])
    flow.allowance(0.0)
    flow.placed(2, 0.0)
    assert flow.placed(0, 0.0) is None  # e.g. held until the fleet knows the socket
    assert flow.paused == Pause.BACKPRESSURE


def test_a_paced_socket_is_probed_and_closing_clears_the_pace() -> None:
    flow = Flow(FlowLimits(frames_per_turn=1, probe_interval=0.5))
    flow.hold([b"1", b"2"])
    flow.allowance(0.0)
    flow.placed(1, 0.0)
    assert flow.expired(0.5) == [Deadline.PACE, Deadline.PROBE]
    flow.hold([b"3"])
    flow.allowance(0.5)
    flow.placed(1, 0.5)
    flow.abort("test")
    assert flow.next_deadline() is None
    assert flow.drop_all() == 1
