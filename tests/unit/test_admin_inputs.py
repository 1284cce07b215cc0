"""What the admin API accepts: bodies and query strings, decided without HTTP."""

from __future__ import annotations

from typing import Any

import pytest

from paradoxplex.admin.errors import ApiError
from paradoxplex.admin.inputs import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    BroadcastRequest,
    SocketQuery,
    check_content_type,
    decode_base64,
    parse_broadcast,
    parse_json,
    parse_labels,
    parse_payload,
    parse_socket_query,
    parse_upstream,
    parse_uuid,
)
from paradoxplex.shared.errors import InvalidRequest
from paradoxplex.shared.sessions import BroadcastTarget, SessionState
from paradoxplex.shared.upstreams import UpstreamSpec

ID = "0f8fad5b-d9cb-469f-a165-70867728950e"


def key_of(error: pytest.ExceptionInfo[InvalidRequest]) -> str:
    return error.value.field


# --- JSON and content type ------------------------------------------------------------------


def test_json_is_decoded() -> None:
    assert parse_json(b' {"a": [1, "b"]} ') == {"a": [1, "b"]}


@pytest.mark.parametrize("raw", [b"", b"  \n", b"{", b"{'a': 1}", b"\xff", b"[1,]"])
def test_bad_json_is_bad_json(raw: bytes) -> None:
    with pytest.raises(ApiError) as raised:
        parse_json(raw)
    assert (raised.value.status, raised.value.code) == (400, "bad_json")


@pytest.mark.parametrize(
    "header",
    [
        None,
        "application/json",
        "application/json; charset=utf-8",
        "APPLICATION/JSON",
        "application/merge-patch+json",
        "application/x-www-form-urlencoded",
        "text/plain; charset=utf-8",
    ],
)
def test_json_content_types_pass(header: str | None) -> None:
    check_content_type(header)


@pytest.mark.parametrize("header", ["", "multipart/form-data", "application/xml", "image/png"])
def test_other_content_types_are_refused(header: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        check_content_type(header)
    assert key_of(raised) == "content-type"


# --- uuid -----------------------------------------------------------------------------------


def test_a_canonical_uuid_passes() -> None:
    assert parse_uuid(ID) == ID


@pytest.mark.parametrize(
    "text", [ID.upper(), ID.replace("-", ""), "{" + ID + "}", "urn:uuid:" + ID, "", "x" * 500]
)
def test_other_uuid_forms_are_refused(text: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        parse_uuid(text)
    assert key_of(raised) == "uuid"
    assert len(str(raised.value)) < 200


# --- payloads -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "payload"),
    [
        ({"text": "héllo"}, "héllo".encode()),
        ({"base64": "AAEC/w=="}, b"\x00\x01\x02\xff"),
        ({"base64": "QUJD"}, b"ABC"),
    ],
)
def test_payloads(body: dict[str, Any], payload: bytes) -> None:
    assert parse_payload(body) == payload


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ({}, "payload"),
        ({"text": "a", "base64": "QQ=="}, "payload"),
        ({"text": None}, "text"),
        ({"text": ""}, "text"),
        ({"text": "\ud800"}, "text"),
        ({"base64": ""}, "base64"),
        ({"base64": 12}, "base64"),
        ({"text": "a", "other": 1}, "other"),
        ("text", "body"),
        (None, "body"),
    ],
)
def test_bad_payloads(body: Any, key: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        parse_payload(body)
    assert key_of(raised) == key


@pytest.mark.parametrize(
    "text", ["QQ", "QQ=", "QUJD=", "QQ==QQ==", " QUJD", "QUJD\n", "Q=UJ", "QU-D", "QU_D", "é"]
)
def test_base64_is_strict(text: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        decode_base64(text)
    assert key_of(raised) == "base64"


# --- broadcast, labels, upstreams -----------------------------------------------------------


@pytest.mark.parametrize("word", ["paused", "inactive"])
def test_a_broadcast_to_paused_sockets_by_either_word(word: str) -> None:
    body = {"target": word, "label": "site=a", "text": "hi"}
    assert parse_broadcast(body) == BroadcastRequest(BroadcastTarget.PAUSED, ("site", "a"), b"hi")


def test_a_broadcast_without_label() -> None:
    wanted = parse_broadcast({"target": "all", "base64": "AA=="})
    assert wanted == BroadcastRequest(BroadcastTarget.ALL, None, b"\0")


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ({"text": "x"}, "target"),
        ({"target": ["all"], "text": "x"}, "target"),
        ({"target": "ALL", "text": "x"}, "target"),
        ({"target": "all", "label": "x", "text": "x"}, "label"),
        ({"target": "all", "label": {"k": "v"}, "text": "x"}, "label"),
        ({"target": "all"}, "payload"),
        ({"target": "all", "text": "x", "ttl": 3}, "ttl"),
    ],
)
def test_bad_broadcasts(body: dict[str, Any], key: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        parse_broadcast(body)
    assert key_of(raised) == key


def test_labels_are_the_bare_map() -> None:
    assert parse_labels({"a": "1", "b/c": ""}) == {"a": "1", "b/c": ""}


@pytest.mark.parametrize("body", [["a"], {"a": 1}, {"a b": "x"}, {"k": "v" * 129}])
def test_bad_labels(body: Any) -> None:
    with pytest.raises(InvalidRequest) as raised:
        parse_labels(body)
    assert key_of(raised) in ("label", "labels")


def test_an_upstream() -> None:
    spec = parse_upstream({"host": "h", "port": 80, "alive_timeout": 5})
    assert spec == UpstreamSpec("h", 80, alive_timeout=5.0)


def test_an_upstream_over_tls_names_only_tls_and_a_server_name() -> None:
    spec = parse_upstream({"host": "h", "port": 443, "tls": True, "server_name": "h.example"})
    assert spec == UpstreamSpec("h", 443, tls=True, server_name="h.example")


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ({"port": 80}, "host"),
        ({"host": "h", "port": 70000}, "port"),
        ({"host": "h", "port": 80, "mode": "draining"}, "mode"),
        ({"host": "h", "port": 80, "ready_timout": 5}, "ready_timout"),
        ({"host": "h", "port": 80, "tls": True, "private_key": "-----BEGIN"}, "private_key"),
        ({"host": "h", "port": 80, "tls": True, "ca": "-----BEGIN"}, "ca"),
        ([], "body"),
    ],
)
def test_bad_upstreams(body: Any, key: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        parse_upstream(body)
    assert key_of(raised) == key


# --- socket queries -------------------------------------------------------------------------


def test_the_default_query() -> None:
    assert parse_socket_query([]) == SocketQuery(limit=DEFAULT_LIMIT)


def test_a_full_query() -> None:
    items = [("node", "n"), ("state", "paused"), ("label", "a=b"), ("limit", "5"), ("cursor", "c")]
    assert parse_socket_query(items) == SocketQuery("n", SessionState.PAUSED, ("a", "b"), 5, "c")


def test_the_listing_takes_the_originals_word_for_paused() -> None:
    assert parse_socket_query([("state", "inactive")]).state is SessionState.PAUSED


def test_empty_values_count_as_absent() -> None:
    items = [("node", ""), ("state", ""), ("label", ""), ("limit", ""), ("cursor", "")]
    assert parse_socket_query(items) == SocketQuery()


@pytest.mark.parametrize("limit", ["1", "100", str(MAX_LIMIT)])
def test_limits_in_range(limit: str) -> None:
    assert parse_socket_query([("limit", limit)]).limit == int(limit)


@pytest.mark.parametrize(
    ("items", "key"),
    [
        ([("limit", "0")], "limit"),
        ([("limit", str(MAX_LIMIT + 1))], "limit"),
        ([("limit", "-5")], "limit"),
        ([("limit", "1e3")], "limit"),
        ([("limit", " 5")], "limit"),
        ([("limit", "\u0665")], "limit"),
        ([("limit", "99999999999")], "limit"),
        ([("state", "closed")], "state"),
        ([("label", "=v")], "label"),
        ([("node", "a"), ("node", "b")], "node"),
        ([("page", "2")], "page"),
    ],
)
def test_bad_queries(items: list[tuple[str, str]], key: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        parse_socket_query(items)
    assert key_of(raised) == key
