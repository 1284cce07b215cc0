"""Every Redis key and channel name, under one prefix (several fleets can share one Redis)."""

from __future__ import annotations


class Keys:
    def __init__(self, prefix: str = "paradoxplex") -> None:
        self.prefix = prefix

    def node(self, node_id: str) -> str:
        """Hash: the node's record (orjson fields)."""
        return f"{self.prefix}:node:{node_id}"

    def node_alive(self, node_id: str) -> str:
        """String with a TTL, refreshed by the heartbeat: the node is alive while it exists."""
        return f"{self.prefix}:alive:{node_id}"

    @property
    def nodes(self) -> str:
        """Set of every node id that registered and was not cleaned up."""
        return f"{self.prefix}:nodes"

    @property
    def sessions_data(self) -> str:
        """Hash: 16-byte session id → the session's packed record."""
        return f"{self.prefix}:session-data"

    def node_sessions(self, node_id: str) -> str:
        """Sorted set (all scores 0) of the 16-byte ids of the sessions a node holds."""
        return f"{self.prefix}:node-sessions:{node_id}"

    @property
    def upstreams(self) -> str:
        """Hash: upstream id → orjson record."""
        return f"{self.prefix}:upstreams"

    def health(self, upstream_id: str) -> str:
        """Hash: node id → orjson view of that upstream's health."""
        return f"{self.prefix}:health:{upstream_id}"

    @property
    def health_upstreams(self) -> str:
        """Set of the upstream ids that have a health hash (views may outlive the registry)."""
        return f"{self.prefix}:health-upstreams"

    def cleanup(self, node_id: str) -> str:
        """SET NX PX lock: the survivor cleaning up after a dead node."""
        return f"{self.prefix}:cleanup:{node_id}"

    def probe(self, nonce: str) -> str:
        """Scratch keys (``probe:<nonce>`` and below) the start-up check writes and deletes."""
        return f"{self.prefix}:probe:{nonce}"

    def inbox(self, node_id: str) -> str:
        """Stream: the node's inbox (replies, admin commands and answers for it), capped by
        an approximate MAXLEN; it exists while the node reads it, and expires when it stops."""
        return f"{self.prefix}:inbox:{node_id}"

    @property
    def fleet_stream(self) -> str:
        """Stream every node reads: broadcasts and control (upstream registry changes)."""
        return f"{self.prefix}:fleet-stream"

    def __repr__(self) -> str:
        return f"<Keys prefix={self.prefix!r}>"
