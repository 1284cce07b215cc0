"""Node configuration: flag > env > TOML > default, and one ConfigError per bad value."""

from __future__ import annotations

import argparse
import dataclasses
import socket
from typing import Any

import pytest

from paradoxplex.node.sockets.session import SessionLimits
from paradoxplex.shared.admission import Admission
from paradoxplex.shared.balancing import Balancer
from paradoxplex.shared.buffers import ReplyBuffers
from paradoxplex.shared.config import (
    PARSERS,
    Address,
    NodeConfig,
    check_config,
    env_name,
    flag_name,
    load_config,
    parse_address,
)
from paradoxplex.shared.errors import ConfigError
from paradoxplex.shared.flags import CHOICES, HELP, add_node_arguments, default_text
from paradoxplex.shared.flow import FlowLimits
from paradoxplex.shared.keys import Keys
from paradoxplex.shared.upstreams import UpstreamSpec

FIELDS = [spec.name for spec in dataclasses.fields(NodeConfig)]


def load(
    flags: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    toml: dict[str, Any] | None = None,
) -> NodeConfig:
    return load_config(flags or {}, env or {}, toml)


def refused(
    flags: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    toml: dict[str, Any] | None = None,
) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load(flags, env, toml)
    assert "\n" not in str(caught.value)
    assert str(caught.value).startswith(caught.value.key + ": ")
    return caught.value


# --- defaults and names ---------------------------------------------------------------------


def test_defaults() -> None:
    config = load()
    expected = NodeConfig(node_id=config.node_id)
    assert config == expected
    assert config.listen == Address("0.0.0.0", 7999)
    assert config.admin == Address("127.0.0.1", 8000)
    assert (config.framing, config.routing, config.redis, config.workers) == (
        "raw",
        "round-robin",
        None,
        1,
    )


def test_default_node_id_is_the_hostname_plus_a_suffix() -> None:
    first, second = load().node_id, load().node_id
    assert first.startswith(socket.gethostname() + "-")
    assert first != second


@pytest.mark.parametrize(
    ("key", "flag", "env"),
    [
        ("listen", "--listen", "PARADOXPLEX_LISTEN"),
        ("max_frame", "--max-frame", "PARADOXPLEX_MAX_FRAME"),
        ("lifecycle_events", "--lifecycle-events", "PARADOXPLEX_LIFECYCLE_EVENTS"),
    ],
)
def test_names(key: str, flag: str, env: str) -> None:
    assert (flag_name(key), env_name(key)) == (flag, env)


def test_every_setting_has_a_parser_and_help() -> None:
    assert set(PARSERS) == set(FIELDS)
    assert set(HELP) == set(FIELDS)


# --- precedence -----------------------------------------------------------------------------

# (key, flag, env, TOML, and what each parses to), default taken from NodeConfig
LAYERS: list[tuple[str, Any, str, Any, Any, Any, Any]] = [
    ("max_frame", "100", "200", 300, 100, 200, 300),
    ("routing", "sticky", "round-robin", "sticky", "sticky", "round-robin", "sticky"),
    (
        "listen",
        "127.0.0.1:1",
        "127.0.0.1:2",
        "127.0.0.1:3",
        Address("127.0.0.1", 1),
        Address("127.0.0.1", 2),
        Address("127.0.0.1", 3),
    ),
    ("idle_timeout", "1.5", "2.5", 3, 1.5, 2.5, 3.0),
    ("lifecycle_events", True, "false", True, True, False, True),
    (
        "upstream",
        ["a:1", "b:2"],
        "c:3,d:4",
        ["e:5"],
        (Address("a", 1), Address("b", 2)),
        (Address("c", 3), Address("d", 4)),
        (Address("e", 5),),
    ),
    ("key_prefix", "f", "e", "t", "f", "e", "t"),
    ("log_level", "debug", "warning", "error", "debug", "warning", "error"),
    ("framing", "line", "length", "line", "line", "length", "line"),
    ("admin_token", "ft", "et", "tt", "ft", "et", "tt"),
]
LAYER_IDS = [row[0] for row in LAYERS]


@pytest.mark.parametrize(
    ("key", "flag", "env", "toml", "from_flag", "from_env", "from_toml"), LAYERS, ids=LAYER_IDS
)
def test_precedence(
    key: str,
    flag: Any,
    env: str,
    toml: Any,
    from_flag: Any,
    from_env: Any,
    from_toml: Any,
) -> None:
    env_vars = {env_name(key): env}
    assert getattr(load({key: flag}, env_vars, {key: toml}), key) == from_flag
    assert getattr(load({key: None}, env_vars, {key: toml}), key) == from_env
    assert getattr(load({}, {}, {key: toml}), key) == from_toml
    default = getattr(NodeConfig(node_id="n"), key)
    assert getattr(load({key: None}, {"PARADOXPLEX_OTHER": env}, {}), key) == default


@pytest.mark.parametrize(("key", "value"), [("max-frame", 7), ("max_frame", 7)])
def test_toml_keys_may_use_dashes(key: str, value: int) -> None:
    assert load(toml={key: value}).max_frame == 7


def test_false_flag_beats_true_env() -> None:
    env = {"PARADOXPLEX_LIFECYCLE_EVENTS": "true"}
    assert load({"lifecycle_events": False}, env).lifecycle_events is False


def test_empty_env_clears_optional_settings() -> None:
    config = load(env={"PARADOXPLEX_REDIS": ""}, toml={"redis": "redis://r:6379/0"})
    assert config.redis is None


@pytest.mark.parametrize(
    ("source", "key"),
    [("flag", "--max-frame"), ("env", "PARADOXPLEX_MAX_FRAME"), ("toml", "max_frame")],
)
def test_error_names_the_key_as_given(source: str, key: str) -> None:
    value = "-5"
    layers: dict[str, Any] = {"flag": {}, "env": {}, "toml": {}}
    layers[source] = {
        "flag": {"max_frame": value},
        "env": {"PARADOXPLEX_MAX_FRAME": value},
        "toml": {"max_frame": -5},
    }[source]
    assert refused(layers["flag"], layers["env"], layers["toml"]).key == key


# --- bad values -----------------------------------------------------------------------------

BAD: list[tuple[str, Any]] = [
    # addresses
    ("listen", "nohost"),
    ("listen", ":7999"),
    ("listen", "host:"),
    ("listen", "host:http"),
    ("listen", "host:65536"),
    ("listen", "host:-1"),
    ("listen", "[]:80"),
    ("admin", "127.0.0.1:99999"),
    ("upstream", "a:1,b"),
    ("upstream", "a:0"),
    ("upstream", 5),
    ("upstream", [5]),
    # numbers
    ("max_frame", "0"),
    ("max_frame", "-1"),
    ("max_frame", "1.5"),
    ("max_frame", 1.5),
    ("max_frame", "lots"),
    ("max_frame", True),
    ("max_frame", float("inf")),
    ("max_frame", float("nan")),
    ("max_connections", "0"),
    ("workers", "0"),
    ("upstream_queue", "-3"),
    ("max_unacked", "0"),
    ("max_unacked_node_bytes", "0"),
    ("max_deliveries", "0"),
    ("retry_budget", "-0.1"),
    ("streams", "0"),
    ("write_buffer", "1023"),
    ("idle_timeout", "-0.5"),
    ("idle_timeout", "soon"),
    ("idle_timeout", "nan"),
    ("idle_timeout", float("nan")),
    ("idle_timeout", "inf"),
    ("idle_timeout", False),
    ("ready_timeout", "0"),
    ("alive_timeout", "0.05"),
    ("hold_timeout", "-1"),
    ("drain_grace", "-1"),
    ("owner_timeout", "0.01"),
    ("bus_hold", "-1"),
    ("heartbeat", "0"),
    ("node_ttl", "0.1"),
    ("max_connections_per_ip", "-1"),
    ("max_connections_per_ip", "1.5"),
    ("accept_rate", "-1"),
    ("accept_rate", "fast"),
    ("accept_rate", "inf"),
    ("max_buffered", "-1"),
    ("max_buffered", "256M"),
    ("max_frames_per_second", "-5"),
    ("max_frames_per_second", "nan"),
    # choices
    ("framing", "xml"),
    ("framing", "LINE"),
    ("routing", "random"),
    ("batch", "on"),
    ("overflow", "block"),
    ("log_level", "trace"),
    ("log_level", ["info"]),
    # text and URLs
    ("node_id", ""),
    ("node_id", "   "),
    ("node_id", 7),
    ("key_prefix", " "),
    ("admin_token", 5),
    ("redis", "localhost:6379"),
    ("redis", "http://r:6379"),
    # booleans
    ("lifecycle_events", "maybe"),
    ("lifecycle_events", "2"),
    ("lifecycle_events", "tru"),
]


@pytest.mark.parametrize(("key", "value"), BAD, ids=[f"{k}={v!r}" for k, v in BAD])
def test_bad_toml_value_names_its_key(key: str, value: Any) -> None:
    assert refused(toml={key: value}).key == key


@pytest.mark.parametrize(
    ("key", "value"),
    [(k, v) for k, v in BAD if isinstance(v, str)],
    ids=[f"{k}={v!r}" for k, v in BAD if isinstance(v, str)],
)
def test_bad_env_value_names_its_variable(key: str, value: str) -> None:
    assert refused(env={env_name(key): value}).key == env_name(key)


@pytest.mark.parametrize("key", ["listn", "config", "max_frames", "upstreams", ""])
def test_unknown_toml_key(key: str) -> None:
    error = refused(toml={key: 1})
    assert error.key == key
    assert "unknown" in error.reason


def test_unknown_env_variables_are_ignored() -> None:
    assert load(env={"PARADOXPLEX_LISTN": "x", "HOME": "/"}).listen.port == 7999


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", True),
        ("true", True),
        ("TRUE", True),
        ("Yes", True),
        (" on ", True),
        ("0", False),
        ("false", False),
        ("No", False),
        ("OFF", False),
        ("", False),
    ],
)
def test_bool_parsing(text: str, expected: bool) -> None:
    assert load(env={"PARADOXPLEX_LIFECYCLE_EVENTS": text}).lifecycle_events is expected


@pytest.mark.parametrize(
    ("key", "text", "expected"),
    [
        ("max_frame", " 42 ", 42),
        ("max_frame", 2.0, 2),
        ("idle_timeout", "0", 0.0),
        ("hold_timeout", 0, 0.0),
        ("write_buffer", "1024", 1024),
        ("owner_timeout", "0.05", 0.05),
        ("bus_hold", "0", 0.0),
        ("redis", "rediss://r:6380/1", "rediss://r:6380/1"),
        ("redis", "unix:///tmp/r.sock", "unix:///tmp/r.sock"),
        ("admin_token", "", None),
        ("upstream", "a:1, ,b:2,", (Address("a", 1), Address("b", 2))),
        ("upstream", "", ()),
        ("listen", "[::]:0", Address("::", 0)),
    ],
)
def test_good_values(key: str, text: Any, expected: Any) -> None:
    assert getattr(load(toml={key: text}), key) == expected


# --- combinations ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("admin", "token", "ok"),
    [
        ("127.0.0.1:8000", None, True),
        ("127.1.2.3:8000", None, True),
        ("localhost:8000", None, True),
        ("[::1]:8000", None, True),
        ("0.0.0.0:8000", None, False),
        ("[::]:8000", None, False),
        ("10.1.2.3:8000", None, False),
        ("admin.example:8000", None, False),
        ("127.example.com:8000", None, False),
        ("0.0.0.0:8000", "", False),
        ("0.0.0.0:8000", "s3cret", True),
        ("[::]:8000", "s3cret", True),
    ],
)
def test_admin_token_required_off_loopback(admin: str, token: str | None, ok: bool) -> None:
    flags = {"admin": admin, "admin_token": token}
    if ok:
        assert load(flags).admin == parse_address("admin", admin)
    else:
        assert refused(flags).key == "--admin-token"


@pytest.mark.parametrize(
    ("workers", "redis", "ok"),
    [("1", None, True), ("2", None, False), ("8", None, False), ("8", "redis://r:6379", True)],
)
def test_workers_need_redis(workers: str, redis: str | None, ok: bool) -> None:
    flags = {"workers": workers, "redis": redis}
    if ok:
        assert load(flags).workers == int(workers)
    else:
        assert refused(flags).key == "--workers"


@pytest.mark.parametrize(
    ("heartbeat", "node_ttl", "ok"),
    [("2", "10", True), ("2", "2.1", True), ("2", "2", False), ("5", "1", False)],
)
def test_node_ttl_outlives_heartbeat(heartbeat: str, node_ttl: str, ok: bool) -> None:
    flags = {"heartbeat": heartbeat, "node_ttl": node_ttl}
    if ok:
        assert load(flags).node_ttl == float(node_ttl)
    else:
        assert refused(flags).key == "--node-ttl"


def test_check_config_accepts_the_defaults() -> None:
    check_config(NodeConfig(node_id="n"))


# --- addresses ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "host", "port", "shown"),
    [
        ("0.0.0.0:7999", "0.0.0.0", 7999, "0.0.0.0:7999"),
        ("example.com:1", "example.com", 1, "example.com:1"),
        ("[::1]:65535", "::1", 65535, "[::1]:65535"),
        ("[fe80::1]:0", "fe80::1", 0, "[fe80::1]:0"),
    ],
)
def test_parse_address(text: str, host: str, port: int, shown: str) -> None:
    address = parse_address("k", text)
    assert address == Address(host, port)
    assert str(address) == shown


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.255.0.9", True),
        ("localhost", True),
        ("::1", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.1", False),
        ("127.example.com", False),
        ("localhost.example.com", False),
        ("", False),
    ],
)
def test_loopback(host: str, loopback: bool) -> None:
    assert Address(host, 1).loopback is loopback


# --- the command line -----------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(prog="paradoxplex node", exit_on_error=False)
    add_node_arguments(result)
    return result


def test_a_flag_for_every_setting() -> None:
    options = {
        option: action.dest
        for action in parser()._actions  # argparse keeps no public list
        for option in action.option_strings
    }
    for name in FIELDS:
        assert options[flag_name(name)] == name
    assert options["--no-lifecycle-events"] == "lifecycle_events"
    assert options["--config"] == "config"


def test_unset_flags_are_none() -> None:
    namespace = vars(parser().parse_args([]))
    assert namespace == dict.fromkeys([*FIELDS, "config"])


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        ([], "", False),
        ([], "on", True),
        (["--lifecycle-events"], "off", True),
        (["--no-lifecycle-events"], "on", False),
    ],
)
def test_lifecycle_flag(argv: list[str], env: str, expected: bool) -> None:
    flags = vars(parser().parse_args(argv))
    config = load_config(flags, {"PARADOXPLEX_LIFECYCLE_EVENTS": env})
    assert config.lifecycle_events is expected


def test_flags_end_to_end() -> None:
    argv = [
        "--listen=127.0.0.1:0",
        "--upstream",
        "a:1",
        "--upstream",
        "[::1]:2",
        "--max-frame",
        "4096",
        "--framing",
        "length",
        "--routing",
        "sticky",
        "--node-id",
        "n1",
        "--config",
        "ignored-by-load-config.toml",
    ]
    config = load_config(vars(parser().parse_args(argv)), {})
    assert config.listen == Address("127.0.0.1", 0)
    assert config.upstream == (Address("a", 1), Address("::1", 2))
    assert (config.max_frame, config.framing, config.routing, config.node_id) == (
        4096,
        "length",
        "sticky",
        "n1",
    )


@pytest.mark.parametrize("name", FIELDS)
def test_every_flag_reaches_its_setting(name: str) -> None:
    value = SAMPLE[name]
    argv = [flag_name(name)] if value is True else [flag_name(name), value]
    config = load_config(vars(parser().parse_args(argv)), {}, PARTNERS.get(name))
    assert getattr(config, name) != getattr(NodeConfig(node_id="default"), name)


SAMPLE: dict[str, Any] = {
    "listen": "127.0.0.1:1",
    "admin": "127.0.0.1:2",
    "upstream": "u:3",
    "redis": "redis://r:6379",
    "redis_password_file": "/run/secrets/redis-password",
    "node_id": "flagged",
    "framing": "line",
    "max_frame": "5",
    "routing": "sticky",
    "max_connections": "6",
    "max_connections_per_ip": "4",
    "accept_rate": "2.5",
    "idle_timeout": "7",
    "lifecycle_events": True,
    "workers": "2",
    "admin_token": "t",
    "key_prefix": "p",
    "ready_timeout": "8",
    "alive_timeout": "9",
    "upstream_queue": "10",
    "max_unacked": "100",
    "max_unacked_bytes": "1000",
    "max_unacked_node": "200",
    "max_unacked_node_bytes": "2000",
    "max_deliveries": "5",
    "retry_budget": "0.5",
    "streams": "11",
    "batch": "off",
    "write_buffer": "2048",
    "overflow": "drop",
    "max_buffered": "4096",
    "max_frames_per_second": "100",
    "hold_timeout": "12",
    "drain_grace": "13",
    "owner_timeout": "14",
    "bus_hold": "3",
    "heartbeat": "1",
    "node_ttl": "15",
    "log_level": "debug",
    "log_format": "json",
    "metrics_public": True,
    "tls_cert": "c.pem",
    "tls_key": "k.pem",
    "tls_client_ca": "ca.pem",
    "proxy_protocol": True,
    "proxy_header_timeout": "2",
    "admin_tls_cert": "ac.pem",
    "admin_tls_key": "ak.pem",
    "upstream_tls": True,
    "upstream_tls_ca": "uca.pem",
    "upstream_tls_cert": "uc.pem",
    "upstream_tls_key": "uk.pem",
    "handoff_socket": "/run/paradoxplex/handoff.sock",
    "take_over": "/run/paradoxplex/handoff.sock",
}


# what a setting needs beside it to be valid at all
PARTNERS: dict[str, dict[str, str]] = {
    "workers": {"redis": "redis://r:1"},
    "redis_password_file": {"redis": "redis://r:1"},
    "tls_cert": {"tls_key": "k.pem"},
    "tls_key": {"tls_cert": "c.pem"},
    "tls_client_ca": {"tls_cert": "c.pem", "tls_key": "k.pem"},
    "admin_tls_cert": {"admin_tls_key": "k.pem"},
    "admin_tls_key": {"admin_tls_cert": "c.pem"},
    "upstream_tls_cert": {"upstream_tls_key": "k.pem"},
    "upstream_tls_key": {"upstream_tls_cert": "c.pem"},
}


@pytest.mark.parametrize(
    ("given", "needed"),
    [
        ("tls_cert", "--tls-key"),
        ("tls_key", "--tls-cert"),
        ("tls_client_ca", "--tls-cert"),
        ("admin_tls_cert", "--admin-tls-key"),
        ("admin_tls_key", "--admin-tls-cert"),
        ("upstream_tls_cert", "--upstream-tls-key"),
        ("upstream_tls_key", "--upstream-tls-cert"),
    ],
)
def test_tls_files_come_in_pairs(given: str, needed: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config({given: "x.pem"}, {})
    assert caught.value.key == flag_name(given)
    assert caught.value.reason == f"needs {needed}"


def test_sample_covers_every_setting() -> None:
    assert set(SAMPLE) == set(FIELDS)


def test_a_password_file_needs_a_redis_url() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config({"redis_password_file": "/run/secrets/pw"}, {})
    assert caught.value.key == "--redis-password-file"


def test_a_configs_repr_shows_no_secret() -> None:
    config = NodeConfig(redis="redis://:hunter2@r:1/0", admin_token="t0ken-xyz")
    assert "hunter2" not in repr(config)
    assert "t0ken-xyz" not in repr(config)


@pytest.mark.parametrize("name", FIELDS)
def test_every_flag_help_shows_its_default_and_variable(name: str) -> None:
    text = " ".join(parser().format_help().partition("options:")[2].split())
    start = text.index(f" {flag_name(name)}")
    entry = text[start : text.index("env PARADOXPLEX_", start) + 60]
    assert f"default: {default_text(name)};" in entry
    assert f"env {env_name(name)})" in entry


@pytest.mark.parametrize("name", sorted(CHOICES))
def test_a_flag_with_choices_lists_them(name: str) -> None:
    assert f"{flag_name(name)} {{{','.join(CHOICES[name])}}}" in parser().format_help()


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("framing", "raw"),
        ("max_frame", "1048576"),
        ("drain_grace", "10"),
        ("listen", "0.0.0.0:7999"),
    ],
)
def test_defaults_are_shown_as_the_readme_writes_them(name: str, shown: str) -> None:
    assert default_text(name) == shown


def test_redis_repeated_or_comma_separated_is_a_list_of_shards() -> None:
    urls = ["redis://a:1/0", "redis://b:2/0"]
    assert PARSERS["redis"]("--redis", urls) == "redis://a:1/0,redis://b:2/0"
    assert PARSERS["redis"]("--redis", "redis://a:1/0, redis://b:2/0") == ",".join(urls)
    with pytest.raises(ConfigError, match="got 'http://h'"):
        PARSERS["redis"]("--redis", ["redis://a:1/0", "http://h"])


def test_each_part_defaults_to_the_node_setting() -> None:
    """A part built without the setting behaves as a node left at its default does."""
    config = NodeConfig(node_id="n")
    flow = FlowLimits()
    session = SessionLimits()
    spec = UpstreamSpec("up", 1)
    assert (flow.write_buffer, flow.overflow, flow.hold_timeout, flow.idle_timeout, flow.rate) == (
        config.write_buffer,
        config.overflow,
        config.hold_timeout,
        config.idle_timeout,
        config.max_frames_per_second,
    )
    assert (session.framing, session.max_frame) == (config.framing, config.max_frame)
    assert (spec.ready_timeout, spec.alive_timeout) == (config.ready_timeout, config.alive_timeout)
    assert UpstreamSpec.from_dict({"host": "up", "port": 1}) == spec
    assert Balancer().policy == config.routing
    assert Keys().prefix == config.key_prefix
    assert Admission().max_total == config.max_connections
    assert ReplyBuffers[str]().limit == config.max_buffered


def test_take_over_without_a_node_id_takes_the_old_ones() -> None:
    assert load_config({"take_over": "/run/h.sock"}, {}).node_id == ""
    given = load_config({"take_over": "/run/h.sock", "node_id": "n1"}, {})
    assert given.node_id == "n1"


@pytest.mark.parametrize("name", ["handoff_socket", "take_over"])
def test_a_handoff_is_not_for_workers(name: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config({name: "/run/h.sock", "workers": "2", "redis": "redis://r:1"}, {})
    assert caught.value.key == flag_name(name)
