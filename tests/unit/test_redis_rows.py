"""How fleet records are stored in Redis: the row codecs (no I/O)."""

from __future__ import annotations

import uuid

import orjson
import pytest

from paradoxplex.node.fleet.redis.rows import (
    client_uuid_of,
    cursor_key,
    decode_node,
    decode_upstream,
    encode_upstream,
    hash_fields,
    incarnation_of,
    milliseconds,
    pack_session,
    unpack_session,
    uuid_key,
)
from paradoxplex.shared.errors import InvalidRequest
from paradoxplex.shared.fleet import NodeRecord
from paradoxplex.shared.sessions import SessionInfo, SessionState
from paradoxplex.shared.upstreams import UpstreamSpec

UUID = "0123abcd-4567-4890-8abc-def012345678"


def info(**changes: object) -> SessionInfo:
    made = SessionInfo(UUID, "node-a", "10.0.0.1:40001", 1_700_000_000.123456)
    for name, value in changes.items():
        setattr(made, name, value)
    return made


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"labels": {"site": "lyon", "kind/ü": "a=b c"}},
        {"state": SessionState.PAUSED, "bytes_in": 12, "bytes_out": 2**40, "messages_out": 3},
        {"incarnation": "0123456789ab"},
    ],
    ids=["plain", "labels", "counters", "incarnation"],
)
def test_a_session_row_round_trips(changes: dict[str, object]) -> None:
    original = info(**changes)
    assert unpack_session(uuid_key(UUID), pack_session(original)) == original


def test_a_row_names_no_field_and_not_its_uuid() -> None:
    row = pack_session(info(labels={"a": "b"}))
    assert b"node_id" not in row
    assert UUID.encode() not in row
    assert isinstance(orjson.loads(row), list)


def test_a_row_carries_its_incarnation_last() -> None:
    row = pack_session(info(incarnation="0123456789ab"))
    assert row.endswith(b',"0123456789ab"]')
    assert incarnation_of(row) == "0123456789ab"


def test_a_row_of_an_earlier_release_has_no_incarnation() -> None:
    earlier = orjson.dumps(orjson.loads(pack_session(info(bytes_in=3)))[:9])
    assert unpack_session(uuid_key(UUID), earlier) == info(bytes_in=3)
    assert incarnation_of(earlier) == ""
    assert incarnation_of(b"not json") == ""


@pytest.mark.parametrize("row", [None, b"", b"not json", b"[1, 2]", b'["n", "r", 1, 99, 0]'])
def test_a_missing_or_malformed_row_is_none(row: bytes | None) -> None:
    assert unpack_session(uuid_key(UUID), row) is None


def test_session_ids_are_16_bytes_that_sort_like_the_uuids() -> None:
    uuids = sorted(str(uuid.uuid4()) for _ in range(200))
    ids = [uuid_key(text) for text in uuids]
    assert all(len(key) == 16 for key in ids)
    assert sorted(ids) == ids
    assert [client_uuid_of(key) for key in ids] == uuids
    with pytest.raises(ValueError, match="badly formed"):
        uuid_key("not-a-uuid")


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (UUID, uuid_key(UUID)),
        (UUID.upper(), uuid_key(UUID)),
        ("0123", bytes.fromhex("0123".ljust(32, "0"))),
        ("", bytes(16)),
    ],
)
def test_a_cursor_becomes_16_bytes(given: str, expected: bytes) -> None:
    assert cursor_key(given) == expected


@pytest.mark.parametrize("given", ["not-a-cursor", "0" * 33, "12 34", "g"])
def test_a_cursor_the_api_never_gave_out_is_an_invalid_request(given: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        cursor_key(given)
    assert (caught.value.field, caught.value.reason) == ("cursor", "not a cursor this API gave out")


def test_node_records_round_trip_through_their_hash() -> None:
    record = NodeRecord("node-a", "0.0.0.0:7999", "http://a:8000", 1.5, sockets=3)
    fields = hash_fields(record.to_dict())
    stored = {str(key).encode(): str(value).encode() for key, value in fields.items()}
    assert decode_node(stored) == record
    assert decode_node({}) is None
    assert decode_node({b"id": b"node-a"}) is None


def test_maps_and_lists_become_json_in_a_hash() -> None:
    assert hash_fields({"n": 1, "labels": {"a": "b"}, "ids": [1]}) == {
        "n": 1,
        "labels": b'{"a":"b"}',
        "ids": b"[1]",
    }


def test_upstreams_round_trip_and_malformed_ones_are_skipped() -> None:
    spec = UpstreamSpec("10.0.0.1", 45888)
    assert decode_upstream(spec.id, encode_upstream(spec)) == spec
    assert decode_upstream("x", b"not json") is None
    assert decode_upstream("x", b'{"host": ""}') is None


@pytest.mark.parametrize(("seconds", "expected"), [(0.0, 1), (0.0001, 1), (1.5, 1500), (30, 30000)])
def test_ttls_are_whole_milliseconds_at_least_one(seconds: float, expected: int) -> None:
    assert milliseconds(seconds) == expected
