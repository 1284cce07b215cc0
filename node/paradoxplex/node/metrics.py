"""Prometheus metrics of one node, in a registry of its own (several nodes can share a process)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from paradoxplex.shared.fleet import BusStats


class Traffic:
    """Hot-path counters as plain integers (a prometheus Counter takes a lock per ``inc``);
    exported at scrape time by ``TrafficCollector``."""

    __slots__ = ("bytes_in", "bytes_out", "messages_in", "messages_out", "upstreams")

    def __init__(self) -> None:
        self.bytes_in = 0
        self.bytes_out = 0
        self.messages_in = 0
        self.messages_out = 0
        self.upstreams: dict[str, list[int]] = {}

    def upstream(self, upstream_id: str) -> list[int]:
        """The ``[sent, received]`` message counts of one upstream, shared with its link."""
        return self.upstreams.setdefault(upstream_id, [0, 0])


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
        for upstream_id, (sent, received) in sorted(t.upstreams.items()):
            family.add_metric([upstream_id, "out"], sent)
            family.add_metric([upstream_id, "in"], received)
        yield family


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
        self.sockets = Gauge("paradoxplex_sockets", "Sockets held by this node", registry=r)
        self.sockets_opened = Counter("paradoxplex_sockets_opened", "Sockets accepted", registry=r)
        self.sockets_closed = Counter(
            "paradoxplex_sockets_closed", "Sockets closed, by reason", ["reason"], registry=r
        )
        self.sockets_refused = Counter(
            "paradoxplex_sockets_refused",
            "Sockets refused because max_connections was reached",
            registry=r,
        )
        self.traffic = Traffic()
        r.register(TrafficCollector(self.traffic))
        self.upstream_state = Gauge(
            "paradoxplex_upstream_state",
            "1 for the state each upstream is in (this node's view)",
            ["upstream", "state"],
            registry=r,
        )
        self.drops = Counter(
            "paradoxplex_drops", "Messages not delivered, by reason", ["reason"], registry=r
        )
        self.bad_input = Counter(
            "paradoxplex_bad_input", "Bad input rejected, by kind", ["kind"], registry=r
        )
        self.fleet_errors = Counter(
            "paradoxplex_fleet_errors", "Fleet (Redis) operations that failed", registry=r
        )
        self.bus_messages = Counter(
            "paradoxplex_bus_messages",
            "Envelopes exchanged with other nodes",
            ["direction"],
            registry=r,
        )

    def watch_bus(self, stats: BusStats) -> None:
        """Export a bus's gap and duplicate counts (once per node)."""
        self.registry.register(BusCollector(stats))

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
