"""Every Redis key and channel name comes from one ``Keys(prefix)``; keys written together
share a hash tag (``shared.placement``)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from paradoxplex.shared.keys import Keys
from paradoxplex.shared.placement import hash_tag

Name = Callable[[Keys, str], str]

# (name, how it is made from Keys and an id, the name under prefix "px" for id "n1", 1 bucket)
NAMES: list[tuple[str, Name, str]] = [
    ("node", lambda k, i: k.node(i), "px:{fleet}:node:n1"),
    ("node_alive", lambda k, i: k.node_alive(i), "px:{fleet}:alive:n1"),
    ("nodes", lambda k, i: k.nodes, "px:{fleet}:nodes"),
    ("sessions_data", lambda k, i: k.sessions_data(0), "px:session-data:{0}"),
    ("node_sessions", lambda k, i: k.node_sessions(i, 0), "px:node-sessions:{0}:n1"),
    ("upstreams", lambda k, i: k.upstreams, "px:{fleet}:upstreams"),
    ("health", lambda k, i: k.health(i), "px:{fleet}:health:n1"),
    ("health_upstreams", lambda k, i: k.health_upstreams, "px:{fleet}:health-upstreams"),
    ("cleanup", lambda k, i: k.cleanup(i), "px:{fleet}:cleanup:n1"),
    ("probe", lambda k, i: k.probe(i), "px:{fleet}:probe:n1"),
    ("shard_list", lambda k, i: k.shard_list, "px:shard-list"),
    ("inbox", lambda k, i: k.inbox(i), "px:inbox:{0}:n1"),
    ("fleet_stream", lambda k, i: k.fleet_stream(0), "px:fleet-stream:{0}"),
    # the key's digest (blake2b, 16 bytes): any printable key makes a plain name
    ("action", lambda k, i: k.action(i), "px:{fleet}:action:ac6e9ee3fdc8b052f7fdb060f4ab0b08"),
    ("actions", lambda k, i: k.actions, "px:{fleet}:actions"),
]
IDS = [name for name, _, _ in NAMES]
PER_ID = {"node", "node_alive", "node_sessions", "health", "cleanup", "probe", "inbox"}


def all_names(keys: Keys, node_id: str = "n1") -> list[str]:
    return [make(keys, node_id) for _, make, _ in NAMES]


def test_the_table_covers_every_name() -> None:
    public = {name for name in dir(Keys) if not name.startswith("_")}
    assert public - {"prefix", "buckets", "bucket", "fleet_streams"} == set(IDS)


@pytest.mark.parametrize(("name", "make", "expected"), NAMES, ids=IDS)
def test_name(name: str, make: Name, expected: str) -> None:
    assert make(Keys("px"), "n1") == expected


@pytest.mark.parametrize(("name", "make", "expected"), NAMES, ids=IDS)
def test_default_prefix(name: str, make: Name, expected: str) -> None:
    assert make(Keys(), "n1") == "paradoxplex" + expected.removeprefix("px")


@pytest.mark.parametrize("prefix", ["a", "fleet-2", "tenant:blue"])
def test_every_name_is_under_the_prefix(prefix: str) -> None:
    assert all(name.startswith(prefix + ":") for name in all_names(Keys(prefix)))


def test_names_are_distinct_for_one_id() -> None:
    names = all_names(Keys("px"))
    assert len(set(names)) == len(names)


def test_two_prefixes_share_no_name() -> None:
    assert not set(all_names(Keys("one"))) & set(all_names(Keys("two")))


@pytest.mark.parametrize("name", sorted(PER_ID))
def test_per_id_names_differ_per_id(name: str) -> None:
    make = next(make for key, make, _ in NAMES if key == name)
    keys = Keys("px")
    assert make(keys, "a") != make(keys, "b")


def test_every_name_but_the_shard_list_has_a_hash_tag() -> None:
    keys = Keys("px", buckets=3)
    tagged = [make(keys, "n1") for name, make, _ in NAMES if name != "shard_list"]
    assert all(hash_tag(name) is not None for name in tagged)


def test_an_inbox_shares_its_tag_with_its_buckets_fleet_stream() -> None:
    keys = Keys("px", buckets=5)
    for node_id in ("a", "b", "node-7", "x:y"):
        bucket = keys.bucket(node_id)
        assert hash_tag(keys.inbox(node_id)) == hash_tag(keys.fleet_stream(bucket)) == str(bucket)


def test_a_session_row_and_its_index_share_a_tag() -> None:
    keys = Keys("px", buckets=16)
    bucket = keys.bucket("00000000-0000-4000-8000-000000000001")
    assert hash_tag(keys.sessions_data(bucket)) == hash_tag(keys.node_sessions("n", bucket))


def test_fleet_streams_one_per_bucket() -> None:
    assert Keys("px", buckets=3).fleet_streams() == [
        "px:fleet-stream:{0}",
        "px:fleet-stream:{1}",
        "px:fleet-stream:{2}",
    ]
    assert Keys("px").fleet_streams() == ["px:fleet-stream:{0}"]


def test_zero_buckets_is_refused() -> None:
    with pytest.raises(ValueError, match="buckets"):
        Keys("px", buckets=0)


def test_repr() -> None:
    assert repr(Keys("px", buckets=3)) == "<Keys prefix='px' buckets=3>"
