"""Prometheus metrics of one node, in a registry of its own (several nodes can share a process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


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
        self.bytes_in = Counter("paradoxplex_bytes_in", "Bytes read from sockets", registry=r)
        self.bytes_out = Counter("paradoxplex_bytes_out", "Bytes written to sockets", registry=r)
        self.messages_in = Counter(
            "paradoxplex_messages_in", "Messages read from sockets (frames)", registry=r
        )
        self.messages_out = Counter(
            "paradoxplex_messages_out", "Messages written to sockets", registry=r
        )
        self.upstream_messages = Counter(
            "paradoxplex_upstream_messages",
            "Messages sent to and received from upstreams",
            ["upstream", "direction"],
            registry=r,
        )
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

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
