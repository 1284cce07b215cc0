"""An upstream link's checks: its health, the ``ready`` check, the ``live`` stream.

Rules:
- ``LinkHealth`` owns the link's state (the table is ``paradoxplex.shared.health``) and why
  it is out of rotation (``error``, for the view). A change of state is announced
  (``on_change``); leaving rotation for any reason but a drain hands back what is queued
  (``on_leave``). Each new reason is logged once as a WARNING, not at every retry, and
  nothing is logged while the link stops. Failures are counted in the link's ``errors``.
- ``ReadyCheck.ask`` is one ``ready`` call, bounded by ``ready_timeout``: True when the
  upstream answered ready=true. Attempts alternate: one fails fast, to learn why the
  upstream cannot be reached ("connection refused"), the next waits for the channel to
  connect, so that an upstream coming up is used as soon as gRPC reconnects. A timeout does
  not replace a cause already known. The caller retries (``shared.retry.UPSTREAM_LINK``).
- ``LiveCheck.keep`` runs the ``live`` stream while the link serves: a ping every third of
  ``alive_timeout`` (0.05 to 5 s), each answer's round trip recorded (``rtt``), and
  ``UpstreamUnavailable`` once no live=true came within ``alive_timeout``. A live stream
  that ended is opened again; a status after the node's own close is not a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf import empty_pb2

from paradoxplex.node.metrics import LinkCounts
from paradoxplex.shared.causes import grpc_cause
from paradoxplex.shared.errors import UpstreamUnavailable
from paradoxplex.shared.health import Health, HealthTracker, Probe, in_rotation

log = logging.getLogger("paradoxplex.node.links")

EMPTY = empty_pb2.Empty()
UPSTREAM_DRAINING = "upstream draining"


class LinkHealth:
    """One link's health and why it is out of rotation (see the module's rules)."""

    def __init__(
        self,
        upstream_id: str,
        counts: LinkCounts,
        *,
        on_change: Callable[[], None],
        on_leave: Callable[[], None],
    ) -> None:
        self.upstream_id = upstream_id
        self.tracker = HealthTracker(now=time.monotonic())
        self.counts = counts
        self.error = ""
        self.stopping = False
        self._warned = ""
        self._on_change = on_change
        self._on_leave = on_leave

    @property
    def state(self) -> Health:
        return self.tracker.state

    @property
    def in_rotation(self) -> bool:
        return in_rotation(self.tracker.state)

    @property
    def reason(self) -> str:
        """Why the upstream is not in rotation ("" when it is)."""
        if self.in_rotation:
            return ""
        if self.state is Health.DRAINING:
            return "draining"
        return self.error or self.state.value

    def apply(self, probe: Probe) -> bool:
        """Apply ``probe``; True when the state changed (announced, and what is queued handed
        back when the link left rotation for another reason than a drain)."""
        was = self.in_rotation
        changed = self.tracker.apply(probe, now=time.monotonic())
        if changed:
            self._on_change()
            if was and not self.in_rotation and probe is not Probe.DRAIN:
                self._on_leave()
        return changed

    def ready(self) -> None:
        """The streams are open: in rotation, no error."""
        self.error = self._warned = ""
        self.apply(Probe.READY_OK)

    def not_ready(self, error: str) -> None:
        """A ready check failed: counted; a new reason is warned once and published (the
        state stays CONNECTING: the link goes on asking)."""
        self.error = error
        self.counts.errors += 1
        if error != self._warned and not self.stopping:
            self._warned = error
            log.warning(
                "upstream %s not ready: %s (retrying with backoff)", self.upstream_id, error
            )
            self._on_change()

    def broke(self, reason: str) -> None:
        """The streams broke or could not be opened: out of rotation, counted, warned (not
        when the upstream had said it drains: then its stream ending is the plan)."""
        if self.error == UPSTREAM_DRAINING:
            self.error = f"{UPSTREAM_DRAINING}: {reason}"
            return
        self.error = reason
        self.counts.errors += 1
        probe = Probe.READY_FAILED if self.state is Health.CONNECTING else Probe.STREAM_BROKEN
        if self.state is not Health.DRAINING and not self.stopping:
            log.warning("upstream %s out of rotation: %s", self.upstream_id, reason)
            self._warned = reason
        self.apply(probe)

    def upstream_draining(self) -> None:
        """The upstream said it drains (it stops, or was asked to): out of rotation at once,
        logged at INFO; its stream ending later is expected, not warned."""
        if self.error == UPSTREAM_DRAINING:
            return
        self.error = self._warned = UPSTREAM_DRAINING
        if not self.stopping and self.state is not Health.DRAINING:
            log.info("upstream %s draining: out of rotation", self.upstream_id)
        self.apply(Probe.STREAM_BROKEN)

    def failed_unexpectedly(self) -> None:
        """A bug on our side (the caller logged it): out of rotation like a broken stream."""
        self.error = "internal error"
        self.apply(Probe.STREAM_BROKEN)

    def __repr__(self) -> str:
        return f"<LinkHealth {self.upstream_id} {self.state.value} error={self.error!r}>"


class ReadyCheck:
    """One ``ready`` call at a time, its failures reported to ``health``."""

    def __init__(self, health: LinkHealth, *, ready_timeout: float) -> None:
        self.health = health
        self.ready_timeout = ready_timeout
        self.attempts = 0  # since the last ready=true: odd ones fail fast, even ones wait

    async def ask(self, stub: Any) -> bool:
        """True when the upstream answered ready=true within ``ready_timeout``."""
        self.attempts += 1
        timeout = self.ready_timeout
        try:
            result = await stub.ready(EMPTY, timeout=timeout, wait_for_ready=self.attempts % 2 == 0)
        except grpc.aio.AioRpcError as error:
            known = self.health.error
            if error.code() is not grpc.StatusCode.DEADLINE_EXCEEDED or not known:
                cause = grpc_cause(error.code().name, error.details() or "", timeout=timeout)
                known = f"unreachable: {cause}"
            self.health.not_ready(known)
            return False
        if not result.ready:
            self.health.not_ready("ready check answered ready=false")
            return False
        self.attempts = 0
        return True


class LiveCheck:
    """The ``live`` stream of one serving round, and the last round trip it measured."""

    def __init__(
        self,
        upstream_id: str,
        tracker: HealthTracker,
        *,
        alive_timeout: float,
        observe_rtt: Callable[[float], None],
    ) -> None:
        self.upstream_id = upstream_id
        self.tracker = tracker
        self.alive_timeout = alive_timeout
        self.rtt: float | None = None
        self._observe_rtt = observe_rtt
        self._ping_sent: float | None = None

    async def keep(self, stub: Any) -> None:
        """Ping ``live`` each interval; ``UpstreamUnavailable`` after ``alive_timeout``
        without live=true."""
        interval = max(0.05, min(5.0, self.alive_timeout / 3))
        call = stub.live()
        reader = asyncio.create_task(self._read(call))
        try:
            while True:
                if reader.done():
                    call = stub.live()
                    reader = asyncio.create_task(self._read(call))
                with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
                    self._ping_sent = time.monotonic()
                    await call.write(EMPTY)
                await asyncio.sleep(interval)
                if self.tracker.live_overdue(
                    now=time.monotonic(), alive_timeout=self.alive_timeout
                ):
                    raise UpstreamUnavailable(
                        self.upstream_id, f"no live=true within {self.alive_timeout:g}s"
                    )
        finally:
            reader.cancel()
            call.cancel()

    async def _read(self, call: Any) -> None:
        with contextlib.suppress(grpc.aio.AioRpcError):
            while True:
                result = await call.read()
                if result is grpc.aio.EOF:
                    return
                now = time.monotonic()
                if self._ping_sent is not None:
                    self.rtt, self._ping_sent = now - self._ping_sent, None
                    self._observe_rtt(self.rtt)
                if result.live:
                    self.tracker.apply(Probe.LIVE_OK, now=now)

    def __repr__(self) -> str:
        rtt = "-" if self.rtt is None else f"{self.rtt * 1000:.1f}ms"
        return f"<LiveCheck {self.upstream_id} rtt={rtt}>"
