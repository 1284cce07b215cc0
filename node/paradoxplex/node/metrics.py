"""Prometheus metrics of one node, in a registry of its own (several nodes can share a process).

Names follow Prometheus conventions: counters end in ``_total``, durations are histograms in
seconds. Besides ``paradoxplex_*`` the registry has the standard ``process_*`` metrics
(resident memory, open fds, CPU seconds), ``python_info`` and ``paradoxplex_build_info``.
Labels that name a reason come from an enum (``DropReason``, ``Refusal``) or a table
(``BAD_INPUT_KINDS``), and every reason's series exists from the start (so do the bus's two
directions): a scrape shows it at 0 before it first happens, so 0 means "never happened", not
"misspelt" or "not exported"; a rate over it is 0 rather than no data, and an alert's
``increase()`` sees the first one (a series born at 1 shows no increase).
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from paradoxplex.node.handoff.steps import OUTCOMES
from paradoxplex.shared.admission import Refusal
from paradoxplex.shared.drops import DropReason
from paradoxplex.shared.fleet import BusStats
from paradoxplex.shared.idempotency import IdempotencyEvent
from paradoxplex.shared.unacked import AtMostOnce

#: A handoff's pause, as clients see it (the target is under 1 s for 10,000 sockets).
PAUSE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0)
DUPLICATE_PLACES = ("upstream", "node")
#: What bad input was rejected: ``paradoxplex_bad_input_total{kind}``, one series each.
BAD_INPUT_KINDS = (
    "bus_envelope",
    "frame_too_large",
    "handoff_relay",
    "proxy_header",
    "reply_without_target",
    "unknown_broadcast",
)
RTT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def build_version() -> str:
    """The installed version of paradoxplex ("unknown" when it is not installed)."""
    try:
        return importlib.metadata.version("paradoxplex")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class LinkCounts:
    """One upstream's message counts, kept by its link and exported at scrape time."""

    __slots__ = ("errors", "received", "sent")

    def __init__(self) -> None:
        self.sent = 0
        self.received = 0
        self.errors = 0

    def __repr__(self) -> str:
        return f"<LinkCounts sent={self.sent} received={self.received} errors={self.errors}>"


class Traffic:
    """Hot-path counters as plain integers (a prometheus Counter takes a lock per ``inc``);
    exported at scrape time by ``TrafficCollector``."""

    __slots__ = ("bytes_in", "bytes_out", "messages_in", "messages_out", "upstreams")

    def __init__(self) -> None:
        self.bytes_in = 0
        self.bytes_out = 0
        self.messages_in = 0
        self.messages_out = 0
        self.upstreams: dict[str, LinkCounts] = {}

    def upstream(self, upstream_id: str) -> LinkCounts:
        """The counts of one upstream, shared with its link."""
        counts = self.upstreams.get(upstream_id)
        if counts is None:
            counts = self.upstreams[upstream_id] = LinkCounts()
        return counts


class TrafficCollector(Collector):
    def __init__(self, traffic: Traffic) -> None:
        self.traffic = traffic

    def collect(self) -> Iterator[CounterMetricFamily]:
        t = self.traffic
        for name, doc, value in (
            ("paradoxplex_bytes_in", "Bytes read from sockets", t.bytes_in),
            ("paradoxplex_bytes_out", "Bytes written to sockets", t.bytes_out),
            ("paradoxplex_messages_in", "Messages read from sockets (frames)", t.messages_in),
            ("paradoxplex_messages_out", "Messages written to sockets", t.messages_out),
        ):
            yield CounterMetricFamily(name, doc, value=value)
        family = CounterMetricFamily(
            "paradoxplex_upstream_messages",
            "Messages sent to and received from upstreams",
            labels=["upstream", "direction"],
        )
        errors = CounterMetricFamily(
            "paradoxplex_upstream_errors",
            "Failed ready checks and broken streams, per upstream",
            labels=["upstream"],
        )
        for upstream_id, counts in sorted(t.upstreams.items()):
            family.add_metric([upstream_id, "out"], counts.sent)
            family.add_metric([upstream_id, "in"], counts.received)
            errors.add_metric([upstream_id], counts.errors)
        yield family
        yield errors


class BusCollector(Collector):
    """The bus's own counts of what it found lost or duplicated on the way in."""

    def __init__(self, stats: BusStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[CounterMetricFamily]:
        s = self.stats
        for name, doc, value in (
            (
                "paradoxplex_bus_gaps",
                "Runs of cross-node envelopes that never arrived (a sender's numbering jumped)",
                s.gaps,
            ),
            (
                "paradoxplex_bus_lost",
                "Cross-node messages (replies, broadcasts, commands) lost in those gaps",
                s.lost,
            ),
            (
                "paradoxplex_bus_duplicates",
                "Cross-node envelopes that arrived twice; the second was dropped",
                s.duplicates,
            ),
        ):
            yield CounterMetricFamily(name, doc, value=value)


class Metrics:
    """Every metric a node exports, named ``paradoxplex_*``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        Info("paradoxplex_build", "The version of paradoxplex", registry=r).info(
            {"version": build_version()}
        )
        self.sockets = Gauge("paradoxplex_sockets", "Sockets held by this node", registry=r)
        self.sockets_opened = Counter("paradoxplex_sockets_opened", "Sockets accepted", registry=r)
        self.sockets_closed = Counter(
            "paradoxplex_sockets_closed", "Sockets closed, by reason", ["reason"], registry=r
        )
        self.sockets_refused = Counter(
            "paradoxplex_sockets_refused",
            "Sockets refused, by reason: " + ", ".join(Refusal),
            ["reason"],
            registry=r,
        )
        for refusal in Refusal:
            self.sockets_refused.labels(refusal)
        self.max_connections = Gauge(
            "paradoxplex_max_connections",
            "Sockets this node serves at once (--max-connections)",
            registry=r,
        )
        self.upstreams_in_rotation = Gauge(
            "paradoxplex_upstreams_in_rotation",
            "Upstreams this node sends traffic to now (ready and live)",
            registry=r,
        )
        self.buffered = Gauge(
            "paradoxplex_buffered_bytes",
            "Reply bytes buffered for this node's sockets (bounded by max_buffered)",
            registry=r,
        )
        self.rate_limited = Counter(
            "paradoxplex_rate_limited",
            "Times a socket's reading waited for max_frames_per_second",
            registry=r,
        )
        self.traffic = Traffic()
        r.register(TrafficCollector(self.traffic))
        self._bus = BusCollector(BusStats())
        r.register(self._bus)
        self.upstream_state = Gauge(
            "paradoxplex_upstream_state",
            "1 for the state each upstream is in (this node's view)",
            ["upstream", "state"],
            registry=r,
        )
        self.drops = Counter(
            "paradoxplex_drops", "Messages not delivered, by reason", ["reason"], registry=r
        )
        for reason in DropReason:
            self.drops.labels(reason)
        self.unacked_messages = Gauge(
            "paradoxplex_unacked_messages",
            "Messages sent to upstreams (or waiting to be sent again) and not acknowledged yet",
            registry=r,
        )
        self.unacked_bytes = Gauge(
            "paradoxplex_unacked_bytes",
            "Payload bytes of paradoxplex_unacked_messages",
            registry=r,
        )
        self.redeliveries = Counter(
            "paradoxplex_redeliveries",
            "Messages delivered again after their upstream ended, broke or failed live "
            "without acknowledging them",
            registry=r,
        )
        self.duplicates = Counter(
            "paradoxplex_duplicates_suppressed",
            "Duplicates not run or not written: where=upstream, redeliveries an upstream had "
            "finished (reported by the SDK); where=node, replies the node had taken already",
            ["where"],
            registry=r,
        )
        for where in DUPLICATE_PLACES:
            self.duplicates.labels(where)
        self.at_most_once = Counter(
            "paradoxplex_at_most_once",
            "Messages sent to an upstream without being kept for redelivery, by reason",
            ["reason"],
            registry=r,
        )
        for cause in AtMostOnce:
            self.at_most_once.labels(cause)
        self.idempotency = Counter(
            "paradoxplex_idempotency",
            "Admin calls with an Idempotency-Key that did not simply act, and key records "
            "lost early, by event: " + ", ".join(IdempotencyEvent),
            ["event"],
            registry=r,
        )
        for event in IdempotencyEvent:
            self.idempotency.labels(event)
        self.bad_input = Counter(
            "paradoxplex_bad_input", "Bad input rejected, by kind", ["kind"], registry=r
        )
        self.fleet_errors = Counter(
            "paradoxplex_fleet_errors", "Fleet (Redis) operations that failed", registry=r
        )
        self.fleet_degraded = Gauge(
            "paradoxplex_fleet_degraded",
            "1 while the fleet state (Redis) is unreachable: local sockets are still served",
            registry=r,
        )
        for kind in BAD_INPUT_KINDS:
            self.bad_input.labels(kind)
        for refusal in Refusal:
            self.sockets_refused.labels(refusal.value)
        self.bus_messages = Counter(
            "paradoxplex_bus_messages",
            "Envelopes exchanged with other nodes",
            ["direction"],
            registry=r,
        )
        for direction in ("in", "out"):
            self.bus_messages.labels(direction)

        self.upstream_rtt = Histogram(
            "paradoxplex_upstream_rtt_seconds",
            "Round-trip time of the live ping to each upstream",
            ["upstream"],
            buckets=RTT_BUCKETS,
            registry=r,
        )
        self.handoffs = Counter(
            "paradoxplex_handoffs",
            "Hot handoffs, by outcome: done (counted by the new process), refused, untouched "
            "and thawed (failed; counted by the old process, which serves on)",
            ["outcome"],
            registry=r,
        )
        for each in OUTCOMES:
            self.handoffs.labels(each)
        self.handoff_sockets = Counter(
            "paradoxplex_handoff_sockets",
            "Sockets of a hot handoff: moved to this process, or kept by the old one (TLS, "
            "closing, unwritten bytes) and drained there",
            ["fate"],
            registry=r,
        )
        for fate in ("moved", "kept"):
            self.handoff_sockets.labels(fate)
        self.handoff_pause = Histogram(
            "paradoxplex_handoff_pause_seconds",
            "How long the sockets of a hot handoff were neither read nor written (freeze to "
            "resume)",
            buckets=PAUSE_BUCKETS,
            registry=r,
        )
        self.bus_delivery = Histogram(
            "paradoxplex_bus_delivery_seconds",
            "Time from another node publishing a reply or broadcast to this node receiving it",
            buckets=RTT_BUCKETS,
            registry=r,
        )

    def dropped(self) -> int:
        """Every message counted in ``paradoxplex_drops``, whatever its reason."""
        return sum(
            int(sample.value)
            for family in self.drops.collect()
            for sample in family.samples
            if sample.name.endswith("_total")
        )

    def watch_bus(self, stats: BusStats) -> None:
        """Export this bus's gap and duplicate counts (zeros until a bus is watched)."""
        self._bus.stats = stats

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
