"""Where a fleet's keys live when it stands on several Redis servers (no I/O).

Rules:
- A fleet's keys fall in ``buckets`` (1 on one server or Sentinel, the shard count when sharded,
  ``CLUSTER_BUCKETS`` on Redis Cluster). What is keyed by a stable id (a session's uuid, a
  node's id) goes to bucket ``jump_hash(id, buckets)`` (Lamping and Veach's jump consistent
  hash: adding a shard moves only 1/N of the ids). The bucket number is the key's hash tag
  (``{3}``), so every key a multi-key command touches shares a Cluster slot and a shard.
- Fleet-wide keys (the node registry, upstreams, health, clean-up locks) carry the tag
  ``{fleet}``: one slot on Cluster, the designated shard (shard 0) when sharded.
- ``shard_of(key, shards)``: a key whose tag is a bucket number lives on that shard; any other
  key (``{fleet}``, untagged) on shard 0.
- ``split_urls`` reads a comma-separated list of Redis URLs in which one URL may itself hold
  commas (``redis+sentinel://h1:26379,h2:26379/name``): a piece without ``://`` belongs to the
  URL before it.
- ``cluster_seeds(url)`` reads ``redis+cluster://[user:password@]host:port[,host:port…]``: the
  nodes a Cluster client asks for the topology first (any of them will do).
- ``fingerprint(urls)`` names a list of shards, in order, without credentials: every node of a
  sharded fleet must be given the same list.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from urllib.parse import unquote, urlsplit

__all__ = [
    "CLUSTER_BUCKETS",
    "FLEET_TAG",
    "bucket_of",
    "cluster_seeds",
    "fingerprint",
    "hash_tag",
    "jump_hash",
    "shard_of",
    "split_urls",
]

#: Buckets on Redis Cluster: each broadcast is one add per bucket; 16 tags spread over the
#: slots of 3 masters as 6/6/4.
CLUSTER_BUCKETS = 16
FLEET_TAG = "fleet"

_MASK = (1 << 64) - 1


def jump_hash(key: int, buckets: int) -> int:
    """Lamping and Veach's jump consistent hash of a 64-bit ``key`` into ``range(buckets)``."""
    if buckets < 1:
        raise ValueError("buckets must be at least 1")
    bucket, jump = -1, 0
    while jump < buckets:
        bucket = jump
        key = (key * 2862933555777941757 + 1) & _MASK
        jump = int((bucket + 1) * ((1 << 31) / ((key >> 33) + 1)))
    return bucket


def bucket_of(stable_id: str, buckets: int) -> int:
    """The bucket of a session uuid or a node id (the same on every node, every run)."""
    if buckets == 1:
        return 0
    digest = hashlib.blake2b(stable_id.encode(), digest_size=8).digest()
    return jump_hash(int.from_bytes(digest, "big"), buckets)


def hash_tag(key: str | bytes) -> str | None:
    """Redis's hash tag: what is between the first ``{`` and the next ``}``, if not empty."""
    text = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
    start = text.find("{")
    end = text.find("}", start + 1)
    if start < 0 or end <= start + 1:
        return None
    return text[start + 1 : end]


def shard_of(key: str | bytes, shards: int) -> int:
    """The shard holding ``key``: its bucket's, or shard 0 for fleet-wide and untagged keys."""
    tag = hash_tag(key)
    if tag is None or not tag.isdigit():
        return 0
    return int(tag) % shards


def split_urls(text: str) -> list[str]:
    """``"redis://a,redis+sentinel://s1,s2/name"`` → ``["redis://a", "redis+sentinel://s1,s2/name"]``."""
    urls: list[str] = []
    pieces = [piece.strip() for piece in text.split(",")]
    for at, piece in enumerate(pieces):
        following = pieces[at + 1] if at + 1 < len(pieces) else ""
        if not piece:  # an empty host inside a URL stays (for its parser to refuse)
            if urls and following and "://" not in following:
                urls[-1] += ","
            continue
        if "://" in piece or not urls:
            urls.append(piece)
        else:
            urls[-1] += "," + piece
    return urls


def fingerprint(urls: Sequence[str]) -> str:
    """A short name for a list of shards in order: their hosts, ports, paths (no credentials)."""
    places = []
    for url in urls:
        parts = urlsplit(url)
        host = parts.netloc.rpartition("@")[2]
        places.append(f"{parts.scheme}://{host}{parts.path}")
    return hashlib.sha256("\n".join(places).encode()).hexdigest()[:16]


def cluster_seeds(url: str) -> tuple[str | None, str | None, list[tuple[str, int]]]:
    """``redis+cluster://u:p@h1:1,h2:2`` → ``("u", "p", [("h1", 1), ("h2", 2)])``;
    ``ValueError`` naming what is wrong (a node without a port, a port out of range)."""
    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    user, colon, password = userinfo.partition(":")
    seeds = []
    for item in (item.strip() for item in hosts.split(",")):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"expected host:port, got {item!r}")
        seeds.append((host.strip("[]"), int(port)))
    return (unquote(user) or None, unquote(password) if colon else None, seeds)
