"""Every Redis key and channel name, under one prefix (several fleets can share one Redis).

Rules (``placement`` says why):
- Fleet-wide keys carry the hash tag ``{fleet}``: ``<prefix>:{fleet}:nodes``. One Cluster slot,
  the designated shard: a MULTI over them never crosses servers.
- Keys of a bucket carry its number as tag: ``<prefix>:session-data:{3}``,
  ``<prefix>:node-sessions:{3}:<node>``, ``<prefix>:inbox:{3}:<node>``,
  ``<prefix>:fleet-stream:{3}``. A session lives in the bucket of its uuid, an inbox in the
  bucket of its node; each bucket has its own copy of the fleet stream, so that a node reads
  its inbox and the fleet stream with one XREAD on one server.
- ``buckets`` is 1 on one server (the same names, with ``{0}``), the shard count when sharded.
"""

from __future__ import annotations

import hashlib

from paradoxplex.shared.placement import FLEET_TAG, bucket_of

DEFAULT_PREFIX = "paradoxplex"  # --key-prefix


class Keys:
    def __init__(self, prefix: str = DEFAULT_PREFIX, *, buckets: int = 1) -> None:
        if buckets < 1:
            raise ValueError("buckets must be at least 1")
        self.prefix = prefix
        self.buckets = buckets
        self._fleet = f"{prefix}:{{{FLEET_TAG}}}"

    def bucket(self, stable_id: str) -> int:
        """The bucket of a session uuid or a node id."""
        return bucket_of(stable_id, self.buckets)

    def node(self, node_id: str) -> str:
        """Hash: the node's record (orjson fields)."""
        return f"{self._fleet}:node:{node_id}"

    def node_alive(self, node_id: str) -> str:
        """String with a TTL, refreshed by the heartbeat: the node is alive while it exists."""
        return f"{self._fleet}:alive:{node_id}"

    @property
    def nodes(self) -> str:
        """Set of every node id that registered and was not cleaned up."""
        return f"{self._fleet}:nodes"

    def sessions_data(self, bucket: int) -> str:
        """Hash: 16-byte session id → the session's packed record, for one bucket."""
        return f"{self.prefix}:session-data:{{{bucket}}}"

    def node_sessions(self, node_id: str, bucket: int) -> str:
        """Sorted set (all scores 0) of the 16-byte ids of a node's sessions in one bucket."""
        return f"{self.prefix}:node-sessions:{{{bucket}}}:{node_id}"

    @property
    def upstreams(self) -> str:
        """Hash: upstream id → orjson record."""
        return f"{self._fleet}:upstreams"

    def health(self, upstream_id: str) -> str:
        """Hash: node id → orjson view of that upstream's health."""
        return f"{self._fleet}:health:{upstream_id}"

    @property
    def health_upstreams(self) -> str:
        """Set of the upstream ids that have a health hash (views may outlive the registry)."""
        return f"{self._fleet}:health-upstreams"

    def cleanup(self, node_id: str) -> str:
        """SET NX PX lock: the survivor cleaning up after a dead node."""
        return f"{self._fleet}:cleanup:{node_id}"

    def action(self, key: str) -> str:
        """Hash (fingerprint, answer) with a TTL: one idempotency key of a fleet-wide admin
        action (broadcast, upstream change); named by a digest of the key, which may hold any
        printable character."""
        digest = hashlib.blake2b(key.encode(), digest_size=16).hexdigest()
        return f"{self._fleet}:action:{digest}"

    @property
    def actions(self) -> str:
        """Sorted set: every ``action`` key, scored by when it expires (ms): bounds their number."""
        return f"{self._fleet}:actions"

    def probe(self, nonce: str) -> str:
        """Scratch keys (``probe:<nonce>`` and below) the start-up check writes and deletes."""
        return f"{self._fleet}:probe:{nonce}"

    @property
    def shard_list(self) -> str:
        """String on every shard of a sharded fleet: the fingerprint of its list of shards."""
        return f"{self.prefix}:shard-list"

    def inbox(self, node_id: str) -> str:
        """Stream: the node's inbox (replies, admin commands and answers for it), capped by
        an approximate MAXLEN; it exists while the node reads it, and expires when it stops."""
        return f"{self.prefix}:inbox:{{{self.bucket(node_id)}}}:{node_id}"

    def fleet_stream(self, bucket: int) -> str:
        """Stream: one bucket's copy of what every node reads (broadcasts, control)."""
        return f"{self.prefix}:fleet-stream:{{{bucket}}}"

    def fleet_streams(self) -> list[str]:
        """Every copy of the fleet stream: a broadcast is added to each."""
        return [self.fleet_stream(bucket) for bucket in range(self.buckets)]

    def __repr__(self) -> str:
        return f"<Keys prefix={self.prefix!r} buckets={self.buckets}>"
