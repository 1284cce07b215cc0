"""The upstream health state machine, as a table.

Rules:
- A link starts CONNECTING: it asks ``ready`` and waits up to ``ready_timeout``.
- ``ready = true`` makes it READY: in rotation, traffic flows.
- A failed or late ready check, a broken stream, or no ``live = true`` within
  ``alive_timeout`` sends it to BACKOFF: out of rotation at once; it retries with backoff.
- DRAINING takes no new traffic; the streams it has finish. REMOVED is final.
- An event a state has no row for leaves the state as it is.
"""

from __future__ import annotations

import enum


class Health(enum.Enum):
    CONNECTING = "connecting"
    READY = "ready"
    BACKOFF = "backoff"
    DRAINING = "draining"
    REMOVED = "removed"


class Probe(enum.Enum):
    READY_OK = "ready_ok"
    READY_FAILED = "ready_failed"
    LIVE_OK = "live_ok"
    LIVE_MISSED = "live_missed"
    STREAM_BROKEN = "stream_broken"
    RETRY = "retry"
    DRAIN = "drain"
    REMOVE = "remove"


TRANSITIONS: dict[Health, dict[Probe, Health]] = {
    Health.CONNECTING: {
        Probe.READY_OK: Health.READY,
        Probe.READY_FAILED: Health.BACKOFF,
        Probe.STREAM_BROKEN: Health.BACKOFF,
        Probe.DRAIN: Health.DRAINING,
        Probe.REMOVE: Health.REMOVED,
    },
    Health.READY: {
        Probe.LIVE_MISSED: Health.BACKOFF,
        Probe.STREAM_BROKEN: Health.BACKOFF,
        Probe.DRAIN: Health.DRAINING,
        Probe.REMOVE: Health.REMOVED,
    },
    Health.BACKOFF: {
        Probe.RETRY: Health.CONNECTING,
        Probe.DRAIN: Health.DRAINING,
        Probe.REMOVE: Health.REMOVED,
    },
    Health.DRAINING: {
        Probe.REMOVE: Health.REMOVED,
    },
    Health.REMOVED: {},
}


def next_health(state: Health, probe: Probe) -> Health:
    """The state after ``probe``; unknown pairs keep the state."""
    return TRANSITIONS[state].get(probe, state)


def in_rotation(state: Health) -> bool:
    """Whether new traffic may be sent to an upstream in this state."""
    return state is Health.READY


class HealthTracker:
    """One upstream's health as seen by one node, with the time of the last change."""

    def __init__(self, *, now: float) -> None:
        self.state = Health.CONNECTING
        self.since = now
        self.last_live = now
        self.failures = 0

    def apply(self, probe: Probe, *, now: float) -> bool:
        """Apply a probe; return True when the state changed."""
        if probe is Probe.LIVE_OK:
            self.last_live = now
        if probe is Probe.READY_OK:
            self.failures = 0
            self.last_live = now
        elif probe in (Probe.READY_FAILED, Probe.STREAM_BROKEN, Probe.LIVE_MISSED):
            self.failures += 1
        new = next_health(self.state, probe)
        if new is self.state:
            return False
        self.state, self.since = new, now
        return True

    def live_overdue(self, *, now: float, alive_timeout: float) -> bool:
        """READY and no ``live = true`` for longer than ``alive_timeout``."""
        return self.state is Health.READY and now - self.last_live > alive_timeout

    def __repr__(self) -> str:
        return f"<HealthTracker {self.state.value} failures={self.failures}>"
