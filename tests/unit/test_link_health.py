"""An upstream link's health: state changes announced, queued work handed back when the link
leaves rotation (not on a drain), each reason warned once, failures counted."""

from __future__ import annotations

import logging

import pytest

from paradoxplex.node.links.checks import LinkHealth
from paradoxplex.node.metrics import LinkCounts
from paradoxplex.shared.health import Health, Probe


class Recorded:
    """A ``LinkHealth`` whose announcements are recorded."""

    def __init__(self) -> None:
        self.counts = LinkCounts()
        self.events: list[str] = []
        self.health = LinkHealth(
            "u:1",
            self.counts,
            on_change=lambda: self.events.append(f"change {self.health.state.value}"),
            on_leave=lambda: self.events.append("leave"),
        )


@pytest.fixture
def recorded() -> Recorded:
    return Recorded()


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_ready_is_announced_and_live_answers_are_not(recorded: Recorded) -> None:
    health = recorded.health
    health.ready()
    assert health.apply(Probe.LIVE_OK) is False
    assert recorded.events == ["change ready"]
    assert (health.in_rotation, health.reason) == (True, "")


def test_a_break_hands_back_what_is_queued_and_a_drain_does_not(recorded: Recorded) -> None:
    health = recorded.health
    health.ready()
    health.broke("stream broken: UNAVAILABLE")
    assert recorded.events == ["change ready", "change backoff", "leave"]
    assert (health.state, health.reason) == (Health.BACKOFF, "stream broken: UNAVAILABLE")

    drained = Recorded()
    drained.health.ready()
    drained.health.apply(Probe.DRAIN)
    assert drained.events == ["change ready", "change draining"]
    assert drained.health.reason == "draining"


def test_a_failed_open_before_ready_is_a_failed_ready(recorded: Recorded) -> None:
    recorded.health.broke("batch stream failed: INTERNAL")
    assert recorded.health.state is Health.BACKOFF
    assert recorded.events == ["change backoff"]  # never in rotation: nothing to hand back
    assert recorded.counts.errors == 1


def test_each_new_reason_is_warned_and_published_once(
    recorded: Recorded, caplog: pytest.LogCaptureFixture
) -> None:
    health = recorded.health
    for error in ["unreachable: connection refused"] * 3 + ["ready check answered ready=false"]:
        health.not_ready(error)
    assert warnings_of(caplog) == [
        "upstream u:1 not ready: unreachable: connection refused (retrying with backoff)",
        "upstream u:1 not ready: ready check answered ready=false (retrying with backoff)",
    ]
    assert recorded.events == ["change connecting"] * 2  # the view has a new reason
    assert (health.state, health.error, recorded.counts.errors) == (
        Health.CONNECTING,
        "ready check answered ready=false",
        4,
    )


def test_a_reason_is_warned_again_after_the_link_was_ready(
    recorded: Recorded, caplog: pytest.LogCaptureFixture
) -> None:
    health = recorded.health
    health.not_ready("unreachable: connection refused")
    health.ready()
    assert health.error == ""
    health.broke("upstream ended the stream")
    health.apply(Probe.RETRY)
    health.not_ready("unreachable: connection refused")
    assert warnings_of(caplog) == [
        "upstream u:1 not ready: unreachable: connection refused (retrying with backoff)",
        "upstream u:1 out of rotation: upstream ended the stream",
        "upstream u:1 not ready: unreachable: connection refused (retrying with backoff)",
    ]


def test_nothing_is_warned_while_the_link_stops_or_drains(
    recorded: Recorded, caplog: pytest.LogCaptureFixture
) -> None:
    health = recorded.health
    health.ready()
    health.apply(Probe.DRAIN)
    health.broke("stream broken: CANCELLED")
    health.stopping = True
    health.not_ready("unreachable: connection refused")
    assert warnings_of(caplog) == []
    assert recorded.counts.errors == 2  # counted all the same


def test_an_unexpected_failure_takes_the_link_out_of_rotation(recorded: Recorded) -> None:
    health = recorded.health
    health.ready()
    health.failed_unexpectedly()
    assert (health.state, health.reason) == (Health.BACKOFF, "internal error")
    assert recorded.events[-1] == "leave"
    assert repr(health) == "<LinkHealth u:1 backoff error='internal error'>"
