"""One upstream link: a gRPC channel, and the parts that keep it open.

Lifecycle (the table is ``paradoxplex.shared.health``): ask ``ready`` until it answers
ready=true within ``ready_timeout``, then open the data stream(s) and the ``live`` stream,
and stay READY while ``live = true`` keeps arriving within ``alive_timeout``. A broken stream
or a missed live takes the link out of rotation at once; what is still queued goes back to
the node to be placed on another link, and so does what the upstream held unacknowledged
(``links/deliveries.py``) once the streams are closed (the node delivers it again). Between
tries the link waits as one policy says (``shared.retry.UPSTREAM_LINK``: 0.2 s doubling up to
5 s, plus up to 0.2 s of jitter), for failed ready checks and broken streams alike, and
starts over once it was ready again.

The parts, built in this order, each given only what it needs:
- ``queue`` (``links/queue.py``): what waits to be sent, cut into gRPC messages; at most
  ``queue_limit`` messages (the node stops reading sockets when every link is full).
- ``health``, ``ready_check``, ``live_check`` (``links/checks.py``): the state and its
  reasons, one ``ready`` call at a time, the ``live`` stream.
- ``deliveries`` (``links/deliveries.py``): what the upstream holds unacknowledged.
- ``streams`` (``links/streams.py``): the batch stream or the original proto's ``streams``
  parallel ones.

Draining, with an upstream that acknowledges: an admin drain hands back what is queued and
asks the upstream to drain its stream (it finishes what it runs and ends the stream; the
rest is delivered again elsewhere); the link then stays closed until removed. An upstream
that drains by itself (SIGTERM) says so: the link leaves rotation at once and reconnects with
backoff once the stream has ended (a new process on the same address is used again).
Closing the link (removed, or the node stops) waits up to ``grace`` for the queue to empty
and the upstream to acknowledge what it holds.

A message too large for one gRPC message (``MAX_MESSAGE``, set on the channel both ways) is
dropped, counted as ``paradoxplex_drops_total{reason="message_too_large"}`` and logged, and
the stream goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable
from typing import Any, Protocol

import grpc

from paradoxplex.node.links.channels import open_channel
from paradoxplex.node.links.checks import LinkHealth, LiveCheck, ReadyCheck
from paradoxplex.node.links.deliveries import LinkDeliveries
from paradoxplex.node.links.queue import LinkQueue, Outgoing
from paradoxplex.node.links.streams import DataStreams
from paradoxplex.node.metrics import Metrics
from paradoxplex.shared.batches import BatchLimits
from paradoxplex.shared.config import DEFAULT_STREAMS, DEFAULT_UPSTREAM_QUEUE
from paradoxplex.shared.drops import DropReason
from paradoxplex.shared.errors import UpstreamUnavailable
from paradoxplex.shared.health import Health, HealthTracker, Probe
from paradoxplex.shared.redelivery import Answers
from paradoxplex.shared.retry import UPSTREAM_LINK, Backoff
from paradoxplex.shared.unacked import UnackedLimits, UnackedTotals
from paradoxplex.shared.upstreams import UpstreamMode, UpstreamSpec
from paradoxplex.wire import upstream_pb2 as pb
from paradoxplex.wire import upstream_pb2_grpc as pb_grpc

log = logging.getLogger("paradoxplex.node.links")

BATCH_LIMITS = BatchLimits()


class LinkHost(Protocol):
    metrics: Metrics

    def link_changed(self, link: UpstreamLink) -> None:
        """The link entered or left rotation."""

    def link_room(self, link: UpstreamLink) -> None:
        """The link's queue has room again."""

    def reroute(self, items: list[Outgoing]) -> None:
        """Items that were queued on a link that left rotation."""

    def redeliver(self, link: UpstreamLink, sent: list[Outgoing], queued: list[Outgoing]) -> None:
        """What the link's upstream held unacknowledged (``sent``) and what was still queued,
        when its streams are gone."""

    def receive_reply(self, reply: pb.OutputStreamRequest) -> Awaitable[None] | None:
        """An upstream's reply; may return an awaitable to apply backpressure to the stream."""


class UpstreamLink:
    """A node's connection to one upstream, kept open with backoff until removed."""

    def __init__(
        self,
        spec: UpstreamSpec,
        host: LinkHost,
        *,
        queue_limit: int = DEFAULT_UPSTREAM_QUEUE,
        streams: int = DEFAULT_STREAMS,
        batch: bool = True,
        limits: BatchLimits = BATCH_LIMITS,
        credentials: grpc.ChannelCredentials | None = None,
        unacked: UnackedLimits | None = None,
        totals: UnackedTotals | None = None,
        answers: Answers | None = None,
        channel: str = "",
    ) -> None:
        self.spec = spec
        self.host = host
        self.credentials = credentials
        self.limits = limits
        self.counts = host.metrics.traffic.upstream(spec.id)
        self.queue = LinkQueue(
            limit=queue_limit,
            limits=limits,
            on_room=lambda: host.link_room(self),
            on_refused=self._refuse,
        )
        self.health = LinkHealth(
            spec.id,
            self.counts,
            on_change=lambda: host.link_changed(self),
            on_leave=self._hand_back,
        )
        self.ready_check = ReadyCheck(self.health, ready_timeout=spec.ready_timeout)
        rtt = host.metrics.upstream_rtt
        self.live_check = LiveCheck(
            spec.id,
            self.health.tracker,
            alive_timeout=spec.alive_timeout,
            observe_rtt=lambda seconds: rtt.labels(spec.id).observe(seconds),
        )
        self.deliveries = LinkDeliveries(
            spec.id,
            limits=unacked if unacked is not None else UnackedLimits(),
            totals=totals if totals is not None else UnackedTotals(),
            answers=answers if answers is not None else Answers(),
            metrics=host.metrics,
            on_free=lambda: host.link_room(self),
        )
        self.streams = DataStreams(
            spec.id,
            self.queue,
            self.counts,
            host.receive_reply,
            self.deliveries,
            limits=limits,
            ready_timeout=spec.ready_timeout,
            parallel=streams,
            batch=batch,
            channel=channel,
            on_draining=self._upstream_draining,
        )
        self.backoff = Backoff(UPSTREAM_LINK)
        self._task: asyncio.Task[None] | None = None
        self._channel: grpc.aio.Channel | None = None

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def state(self) -> Health:
        return self.health.state

    @property
    def in_rotation(self) -> bool:
        return self.health.in_rotation

    @property
    def tracker(self) -> HealthTracker:
        return self.health.tracker

    @property
    def error(self) -> str:
        return self.health.error

    @property
    def reason(self) -> str:
        """Why the upstream is not in rotation ("" when it is)."""
        return self.health.reason

    @property
    def batching(self) -> bool | None:
        """True: the batch stream; False: the original proto's; None: never opened yet."""
        return self.streams.batching

    def has_room(self) -> bool:
        return self.queue.has_room()

    def enqueue(self, item: Outgoing) -> None:
        self.queue.put(item)

    def view(self) -> dict[str, Any]:
        """This node's view of the upstream, for the fleet and the admin API."""
        rtt = self.live_check.rtt
        return {
            "state": self.state.value,
            "ready": self.in_rotation,
            "live": self.in_rotation,
            "since": time.time() - (time.monotonic() - self.tracker.since),
            "queued": len(self.queue),
            "unacked": len(self.deliveries),
            "batch": self.batching,
            "error": self.error,
            "reason": self.reason,
            "sent": self.counts.sent,
            "received": self.counts.received,
            "errors": self.counts.errors,
            "rtt_ms": None if rtt is None else round(rtt * 1000, 3),
        }

    # lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        self._channel = open_channel(self.spec, self.credentials)
        stub: Any = pb_grpc.UpstreamPeerServiceStub(self._channel)
        self._task = asyncio.create_task(self._run(stub), name=f"upstream {self.id}")
        if self.spec.mode is UpstreamMode.DRAINING:
            self.drain()

    def drain(self) -> None:
        """No new traffic. An upstream that acknowledges is asked to drain its stream (what
        is queued goes elsewhere now, what it did not start when it ends); otherwise what is
        queued and in flight finishes."""
        if self.health.apply(Probe.DRAIN):
            log.info("upstream %s draining", self.id)
        if self.streams.acked and not self.streams.drain_requested:
            if self.queue:
                if self.deliveries.final is not None and not self.deliveries.final_sent:
                    self.deliveries.forget_final()
                self.host.reroute(self.queue.drain())
            self.streams.request_drain()

    def _upstream_draining(self) -> None:
        """The upstream said it drains: out of rotation at once (its queue goes elsewhere)."""
        self.health.upstream_draining()

    async def close(self, *, grace: float = 5.0, drain: bool = False) -> None:
        """Stop: let the queue empty and the upstream acknowledge what it holds for up to
        ``grace`` seconds, then end the streams (not logged as a drain: the upstream stays
        registered for the fleet). ``drain`` (the upstream is removed): an upstream that
        acknowledges is asked to drain first, and what it did not start goes elsewhere."""
        if drain:
            self.drain()
        self.health.apply(Probe.DRAIN)
        deadline = time.monotonic() + grace
        while (  # noqa: ASYNC110 - bounded
            (self.queue or self.deliveries)
            and time.monotonic() < deadline
            and self.batching is not None
            and not self._task_done()
        ):
            await asyncio.sleep(0.01)
        self.health.stopping = True
        self.health.apply(Probe.REMOVE)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._channel is not None:
            await self._channel.close()
        self._take_back()

    def _task_done(self) -> bool:
        return self._task is not None and self._task.done()

    def _take_back(self) -> None:
        """The streams are gone: what the upstream held and what is queued go back."""
        sent, queued = self.deliveries.take_back(), self.queue.drain()
        self.host.redeliver(self, sent, queued)

    def _hand_back(self) -> None:
        """The link left rotation: what it still holds goes to other links; while its
        stream still runs (the upstream drains), only what is queued (the node holds back
        the sockets whose messages the upstream still holds until it ends the stream)."""
        if self.streams.running:
            if self.queue:
                if self.deliveries.final is not None and not self.deliveries.final_sent:
                    self.deliveries.forget_final()
                self.host.reroute(self.queue.drain())
        else:
            self._take_back()

    async def _run(self, stub: Any) -> None:
        """Ask ready, serve; after any failure wait as the backoff says; until stopped."""
        while not self._stopped():
            try:
                if await self.ready_check.ask(stub):
                    await self._serve(stub)
            except UpstreamUnavailable as error:
                self.health.broke(error.reason)
            except Exception:
                log.exception("upstream %s: unexpected error", self.id)
                self.health.failed_unexpectedly()
            self._take_back()  # the streams are closed: what they held goes elsewhere
            if self._stopped() or self._drained():
                return
            await asyncio.sleep(self.backoff.failed())
            self.health.apply(Probe.RETRY)

    def _stopped(self) -> bool:
        return self.health.stopping or self.state is Health.REMOVED

    def _drained(self) -> bool:
        """An admin drain ended the upstream's stream: nothing more to open until removed."""
        return self.state is Health.DRAINING and self.streams.drain_requested

    async def _serve(self, stub: Any) -> None:
        """Open the streams and serve until one of them ends (always by an exception)."""
        tasks: list[asyncio.Task[None]] = []
        try:
            tasks = await self.streams.open(stub)
            tasks.append(asyncio.create_task(self.live_check.keep(stub)))
            if self.state is Health.DRAINING and self.streams.acked:
                self.streams.request_drain()
            self.health.ready()
            self.backoff.succeeded()
            log.info("upstream %s ready (%s)", self.id, "batch" if self.batching else "original")
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
            raise UpstreamUnavailable(self.id, "stream ended")
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            self.streams.close()

    def _refuse(self, item: Outgoing, size: int) -> None:
        self.host.metrics.drops.labels(DropReason.MESSAGE_TOO_LARGE).inc()
        log.warning(
            "upstream %s: dropped a message of %d bytes from socket %s: over the %d-byte limit "
            "of one gRPC message",
            self.id,
            size,
            item.client_uuid,
            self.limits.max_single,
        )

    def __repr__(self) -> str:
        return (
            f"<UpstreamLink {self.id} {self.state.value} queued={len(self.queue)} "
            f"unacked={len(self.deliveries)}>"
        )
