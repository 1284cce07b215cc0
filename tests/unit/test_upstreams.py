"""Upstream records: parsing from outside, ids, and the round trip through a dict."""

from __future__ import annotations

from typing import Any

import pytest

from paradoxplex.shared.config import DEFAULT_ALIVE_TIMEOUT, DEFAULT_READY_TIMEOUT, Address
from paradoxplex.shared.errors import ConfigError, InvalidRequest
from paradoxplex.shared.upstreams import UpstreamMode, UpstreamSpec


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [("up", 45888, "up:45888"), ("10.0.0.1", 1, "10.0.0.1:1"), ("::1", 65535, "[::1]:65535")],
)
def test_id_is_host_and_port(host: str, port: int, expected: str) -> None:
    spec = UpstreamSpec(host, port)
    assert spec.id == expected
    assert spec.address == Address(host, port)


def test_a_record_carries_tls_choices_and_never_key_material() -> None:
    data = UpstreamSpec("up", 1, tls=True, server_name="a.example").to_dict()
    assert (data["tls"], data["server_name"]) == (True, "a.example")
    assert not {"key", "cert", "ca", "private_key"} & data.keys()


def test_a_record_stored_before_tls_existed_reads_as_plain() -> None:
    old = {"host": "up", "port": 1, "ready_timeout": 5, "alive_timeout": 30, "mode": "active"}
    assert UpstreamSpec.from_dict(old) == UpstreamSpec("up", 1, 5.0, 30.0)


def test_defaults() -> None:
    spec = UpstreamSpec("up", 1)
    assert (spec.ready_timeout, spec.alive_timeout, spec.mode) == (
        DEFAULT_READY_TIMEOUT,
        DEFAULT_ALIVE_TIMEOUT,
        UpstreamMode.ACTIVE,
    )


@pytest.mark.parametrize(
    "spec",
    [
        UpstreamSpec("up", 45888),
        UpstreamSpec("::1", 9, 0.1, 3600.0, UpstreamMode.DRAINING),
        UpstreamSpec("a.example", 443, 5.0, 30.0),
        UpstreamSpec("10.0.0.5", 443, tls=True),
        UpstreamSpec("10.0.0.5", 444, tls=True, server_name="echo.internal"),
    ],
    ids=str,
)
def test_round_trip(spec: UpstreamSpec) -> None:
    data = spec.to_dict()
    assert data["id"] == spec.id
    assert UpstreamSpec.from_dict(data) == spec


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"host": "up", "port": 1}, UpstreamSpec("up", 1)),
        ({"host": "::1", "port": 2}, UpstreamSpec("::1", 2)),
        (
            {"host": "up", "port": 3, "ready_timeout": 1, "alive_timeout": 2.5},
            UpstreamSpec("up", 3, 1.0, 2.5),
        ),
        (
            {"host": "up", "port": 4, "mode": "draining"},
            UpstreamSpec("up", 4, mode=UpstreamMode.DRAINING),
        ),
        ({"host": "up", "port": 5, "unknown": "ignored"}, UpstreamSpec("up", 5)),
        # JSON has one number type: 6133.0 is the whole number the OpenAPI document allows
        ({"host": "up", "port": 6133.0}, UpstreamSpec("up", 6133)),
        ({"host": "::ffff:1.2.3.4", "port": 6}, UpstreamSpec("::ffff:1.2.3.4", 6)),
        ({"host": "a-1.B.example", "port": 7}, UpstreamSpec("a-1.B.example", 7)),
        ({"host": "x" * 63 + ".example", "port": 8}, UpstreamSpec("x" * 63 + ".example", 8)),
        ({"host": "up", "port": 9, "tls": True}, UpstreamSpec("up", 9, tls=True)),
        ({"host": "up", "port": 9, "tls": False}, UpstreamSpec("up", 9)),
        (
            {"host": "up", "port": 9, "tls": True, "server_name": "a.example"},
            UpstreamSpec("up", 9, tls=True, server_name="a.example"),
        ),
        ({"host": "up", "port": 9, "server_name": None}, UpstreamSpec("up", 9)),
    ],
)
def test_from_dict(data: dict[str, Any], expected: UpstreamSpec) -> None:
    assert UpstreamSpec.from_dict(data) == expected


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ([], "upstream"),
        ("up:1", "upstream"),
        (None, "upstream"),
        ({"port": 1}, "host"),
        ({"host": "", "port": 1}, "host"),
        ({"host": "[]", "port": 1}, "host"),
        ({"host": 5, "port": 1}, "host"),
        ({"host": "up"}, "port"),
        ({"host": "up", "port": 0}, "port"),
        ({"host": "up", "port": 65536}, "port"),
        ({"host": "up", "port": -1}, "port"),
        ({"host": "up", "port": "80"}, "port"),
        ({"host": "up", "port": 80.5}, "port"),
        ({"host": "up", "port": float("nan")}, "port"),
        ({"host": "[::1]", "port": 1}, "host"),
        ({"host": "fe80::1%eth0", "port": 1}, "host"),
        ({"host": "127.0.0.1\n", "port": 1}, "host"),
        ({"host": "\u0000", "port": 1}, "host"),
        ({"host": "up\r\nINFO forged line", "port": 1}, "host"),
        ({"host": "a b", "port": 1}, "host"),
        ({"host": "up\u2028", "port": 1}, "host"),
        ({"host": "été.example", "port": 1}, "host"),
        ({"host": "-up", "port": 1}, "host"),
        ({"host": "up-", "port": 1}, "host"),
        ({"host": "a..b", "port": 1}, "host"),
        ({"host": "up.", "port": 1}, "host"),
        ({"host": "under_score", "port": 1}, "host"),
        ({"host": "x" * 64, "port": 1}, "host"),
        ({"host": ".".join(["x" * 63] * 4), "port": 1}, "host"),
        ({"host": "256.1.1.1", "port": 1}, "host"),
        ({"host": "1.2.3", "port": 1}, "host"),
        ({"host": "up", "port": True}, "port"),
        ({"host": "up", "port": 1, "ready_timeout": 0}, "ready_timeout"),
        ({"host": "up", "port": 1, "ready_timeout": 0.09}, "ready_timeout"),
        ({"host": "up", "port": 1, "ready_timeout": 3601}, "ready_timeout"),
        ({"host": "up", "port": 1, "ready_timeout": "5"}, "ready_timeout"),
        ({"host": "up", "port": 1, "ready_timeout": True}, "ready_timeout"),
        ({"host": "up", "port": 1, "ready_timeout": float("nan")}, "ready_timeout"),
        ({"host": "up", "port": 1, "alive_timeout": -1}, "alive_timeout"),
        ({"host": "up", "port": 1, "alive_timeout": float("inf")}, "alive_timeout"),
        ({"host": "up", "port": 1, "alive_timeout": None}, "alive_timeout"),
        ({"host": "up", "port": 1, "mode": "paused"}, "mode"),
        ({"host": "up", "port": 1, "mode": None}, "mode"),
        ({"host": "up", "port": 1, "tls": "yes"}, "tls"),
        ({"host": "up", "port": 1, "tls": 1}, "tls"),
        ({"host": "up", "port": 1, "tls": None}, "tls"),
        ({"host": "up", "port": 1, "server_name": ""}, "server_name"),
        ({"host": "up", "port": 1, "server_name": 5}, "server_name"),
        ({"host": "up", "port": 1, "server_name": "a b"}, "server_name"),
        ({"host": "up", "port": 1, "server_name": "x\nINFO forged"}, "server_name"),
    ],
)
def test_from_dict_refuses(data: Any, key: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        UpstreamSpec.from_dict(data)
    assert caught.value.field == key


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [("up:45888", "up", 45888), ("[::1]:50051", "::1", 50051), ("10.0.0.1:1", "10.0.0.1", 1)],
)
def test_parse(text: str, host: str, port: int) -> None:
    spec = UpstreamSpec.parse(text, ready_timeout=1.0, alive_timeout=2.0)
    assert spec == UpstreamSpec(host, port, 1.0, 2.0)


@pytest.mark.parametrize("text", ["up", "up:", ":1", "up:x", "up:70000", "up:0", "[]:1"])
def test_parse_refuses(text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        UpstreamSpec.parse(text, ready_timeout=1.0, alive_timeout=2.0)
    assert caught.value.key == "upstream"


def accepted_by_parse(host: str, port: int) -> bool:
    try:
        UpstreamSpec.parse(f"{host}:{port}", ready_timeout=1.0, alive_timeout=2.0)
    except ConfigError:
        return False
    return True


def accepted_by_from_dict(host: str, port: int) -> bool:
    try:
        UpstreamSpec.from_dict({"host": host, "port": port})
    except InvalidRequest:
        return False
    return True


@pytest.mark.parametrize("port", [-1, 0, 1, 65535, 65536])
def test_parse_and_from_dict_agree_on_ports(port: int) -> None:
    assert accepted_by_parse("up", port) == accepted_by_from_dict("up", port)


@pytest.mark.parametrize(
    "host", ["up", "10.0.0.1", "::1", "up\n", "a b", "-up", "a..b", "256.1.1.1", "under_score"]
)
def test_parse_and_from_dict_agree_on_hosts(host: str) -> None:
    shown = f"[{host}]" if ":" in host else host
    assert accepted_by_parse(shown, 1) == accepted_by_from_dict(host, 1)


def test_a_bad_upstream_setting_names_the_setting_and_quotes_the_host() -> None:
    with pytest.raises(ConfigError) as caught:
        UpstreamSpec.parse("up\n:1", ready_timeout=1.0, alive_timeout=2.0)
    assert str(caught.value) == (
        "upstream: host 'up\\n' must not hold spaces, control or non-ASCII characters"
    )
