"""Where keys live over several Redis servers: jump hash, hash tags, URL lists, fingerprints."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest

from paradoxplex.shared.placement import (
    bucket_of,
    cluster_seeds,
    fingerprint,
    hash_tag,
    jump_hash,
    shard_of,
    split_urls,
)


@pytest.mark.parametrize("key", [0, 1, 0xDEADBEEF, 2**64 - 1])
def test_jump_hash_stays_in_range_and_one_bucket_is_bucket_0(key: int) -> None:
    assert jump_hash(key, 1) == 0
    assert all(0 <= jump_hash(key, n) < n for n in range(1, 50))


def test_jump_hash_moves_only_a_share_when_a_bucket_is_added() -> None:
    keys = range(0, 10_000 * 7919, 7919)
    moved = sum(jump_hash(k, 3) != jump_hash(k, 4) for k in keys)
    assert 0.2 < moved / len(keys) < 0.3  # about 1/4, and only to the new bucket
    assert all(jump_hash(k, 4) == 3 for k in keys if jump_hash(k, 3) != jump_hash(k, 4))


def test_buckets_below_one_are_refused() -> None:
    with pytest.raises(ValueError, match="buckets"):
        jump_hash(1, 0)


def test_sessions_spread_evenly_and_stably() -> None:
    ids = [str(uuid.UUID(int=n * 2654435761 + 12345)) for n in range(3000)]
    counts = Counter(bucket_of(i, 3) for i in ids)
    assert set(counts) == {0, 1, 2}
    assert all(800 <= count <= 1200 for count in counts.values())
    assert [bucket_of(i, 3) for i in ids[:20]] == [bucket_of(i, 3) for i in ids[:20]]
    assert all(bucket_of(i, 1) == 0 for i in ids[:20])


@pytest.mark.parametrize(
    ("key", "tag"),
    [
        ("px:{fleet}:nodes", "fleet"),
        ("px:inbox:{3}:n{1}", "3"),
        ("px:{}:x", None),
        ("px:nodes", None),
        ("px:{open", None),
        (b"px:session-data:{12}", "12"),
    ],
)
def test_hash_tag_follows_redis(key: str | bytes, tag: str | None) -> None:
    assert hash_tag(key) == tag


@pytest.mark.parametrize(
    ("key", "shard"),
    [("px:session-data:{2}", 2), ("px:{fleet}:nodes", 0), ("px:shard-list", 0), ("a{4}", 1)],
)
def test_shard_of(key: str, shard: int) -> None:
    assert shard_of(key, 3) == shard


@pytest.mark.parametrize(
    ("text", "urls"),
    [
        ("redis://a:1/0", ["redis://a:1/0"]),
        ("redis://a:1, redis://b:2,", ["redis://a:1", "redis://b:2"]),
        (
            "redis://a,redis+sentinel://:pw@s1:26379,s2:26379/main,unix:///tmp/r.sock",
            ["redis://a", "redis+sentinel://:pw@s1:26379,s2:26379/main", "unix:///tmp/r.sock"],
        ),
        ("redis+cluster://h1:7000,h2:7001", ["redis+cluster://h1:7000,h2:7001"]),
    ],
)
def test_split_urls(text: str, urls: list[str]) -> None:
    assert split_urls(text) == urls


def test_fingerprint_ignores_credentials_and_sees_order() -> None:
    one = ["redis://:a@h1:6379/0", "redis://h2:6379/0"]
    assert fingerprint(one) == fingerprint(["redis://:b@h1:6379/0", "redis://u:c@h2:6379/0"])
    assert fingerprint(one) != fingerprint(list(reversed(one)))
    assert fingerprint(one) != fingerprint([*one, "redis://h3:6379/0"])


@pytest.mark.parametrize(
    ("url", "seeds"),
    [
        ("redis+cluster://h1:7000", (None, None, [("h1", 7000)])),
        ("redis+cluster://h1:7000, h2:7001", (None, None, [("h1", 7000), ("h2", 7001)])),
        ("redis+cluster://:pw@h1:1", (None, "pw", [("h1", 1)])),
        ("redis+cluster://u:p%3A@[::1]:1", ("u", "p:", [("::1", 1)])),
    ],
)
def test_cluster_seeds(url: str, seeds: object) -> None:
    assert cluster_seeds(url) == seeds


@pytest.mark.parametrize(
    "url", ["redis+cluster://", "redis+cluster://h", "redis+cluster://h:70000"]
)
def test_cluster_seeds_need_host_and_port(url: str) -> None:
    with pytest.raises(ValueError, match="expected host:port"):
        cluster_seeds(url)
