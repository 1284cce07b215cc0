"""Node configuration: one frozen dataclass, loaded once.

Precedence: command-line flag > ``PARADOXPLEX_<NAME>`` environment variable > TOML file
(``--config FILE``, keys are the setting names with ``_``) > default. A bad value raises
``ConfigError(key, reason)``; the CLI prints it as one line and exits 2.

Each default is declared once, in the lowest module that needs it, and imported by the
others: a default that a decision module below this one owns comes from there (framing,
balancing, admission, buffers, proxy, keys); one that modules importing this one share is a
``DEFAULT_*`` constant here (flow, upstreams, the node's links, bus and logs).
"""

from __future__ import annotations

import ipaddress
import math
import socket
import tomllib
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from paradoxplex.shared.admission import DEFAULT_MAX_TOTAL
from paradoxplex.shared.balancing import DEFAULT_ROUTING, ROUTING
from paradoxplex.shared.buffers import DEFAULT_LIMIT as DEFAULT_MAX_BUFFERED
from paradoxplex.shared.credentials import redact_url
from paradoxplex.shared.errors import ConfigError
from paradoxplex.shared.framing import DEFAULT_FRAMING, DEFAULT_MAX_FRAME, FRAMERS
from paradoxplex.shared.keys import DEFAULT_PREFIX
from paradoxplex.shared.placement import split_urls
from paradoxplex.shared.proxy import DEFAULT_HEADER_TIMEOUT
from paradoxplex.shared.redelivery import DEFAULT_BUDGET_RATIO, DEFAULT_MAX_DELIVERIES
from paradoxplex.shared.sentinel_url import SCHEMES as SENTINEL_SCHEMES
from paradoxplex.shared.sentinel_url import is_sentinel_url, parse_sentinel_url
from paradoxplex.shared.unacked import (
    DEFAULT_LINK_BYTES,
    DEFAULT_LINK_MESSAGES,
    DEFAULT_NODE_BYTES,
    DEFAULT_NODE_MESSAGES,
)

ENV_PREFIX = "PARADOXPLEX_"
OVERFLOW_POLICIES = ("close", "drop")
BATCH_MODES = ("auto", "off")
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
#: The kinds of ``--redis`` URL a node accepts (each a row of ``node.redis.CLIENT_KINDS``).
REDIS_SCHEMES = ("redis", "rediss", "unix", *SENTINEL_SCHEMES, "redis+cluster")

# Defaults that modules importing this one share (see the rules above).
DEFAULT_READY_TIMEOUT = 10.0  # upstreams.UpstreamSpec too (one added through the admin API)
DEFAULT_ALIVE_TIMEOUT = 30.0
DEFAULT_UPSTREAM_QUEUE = 1024  # the node's links and pool
DEFAULT_STREAMS = 16
DEFAULT_WRITE_BUFFER = 1024 * 1024  # flow.FlowLimits
DEFAULT_OVERFLOW = OVERFLOW_POLICIES[0]
DEFAULT_HOLD_TIMEOUT = 30.0
DEFAULT_BUS_HOLD = 10.0  # the Redis bus
DEFAULT_LOG_LEVEL = "info"  # node.logs
DEFAULT_LOG_FORMAT = LOG_FORMATS[0]


@dataclass(frozen=True, slots=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False  # a host name such as 127.example.com may resolve anywhere


def parse_address(key: str, text: str) -> Address:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6). Port 0 lets the OS choose."""
    host, sep, port = str(text).rpartition(":")
    host = host.strip("[]")
    if not sep or not host:
        raise ConfigError(key, f"expected HOST:PORT, got {text!r}")
    try:
        number = int(port)
    except ValueError:
        raise ConfigError(key, f"port must be a number, got {port!r}") from None
    if not 0 <= number <= 65535:
        raise ConfigError(key, f"port {number} is out of range 0-65535")
    return Address(host, number)


DEFAULT_LISTEN = Address("0.0.0.0", 7999)  # the original's ports
DEFAULT_ADMIN = Address("127.0.0.1", 8000)  # the admin CLI's and `paradoxplex health`'s too


def default_node_id() -> str:
    return f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """Every setting of ``paradoxplex node``; the README's settings table lists the same."""

    listen: Address = DEFAULT_LISTEN
    admin: Address = DEFAULT_ADMIN
    upstream: tuple[Address, ...] = ()
    redis: str | None = field(default=None, repr=False)  # its password stays out of reprs
    redis_password_file: str | None = None
    node_id: str = field(default_factory=default_node_id)
    framing: str = DEFAULT_FRAMING
    max_frame: int = DEFAULT_MAX_FRAME
    routing: str = DEFAULT_ROUTING
    max_connections: int = DEFAULT_MAX_TOTAL
    max_connections_per_ip: int = 0
    accept_rate: float = 0.0
    idle_timeout: float = 0.0
    lifecycle_events: bool = False
    workers: int = 1
    admin_token: str | None = field(default=None, repr=False)
    key_prefix: str = DEFAULT_PREFIX
    ready_timeout: float = DEFAULT_READY_TIMEOUT
    alive_timeout: float = DEFAULT_ALIVE_TIMEOUT
    upstream_queue: int = DEFAULT_UPSTREAM_QUEUE
    max_unacked: int = DEFAULT_LINK_MESSAGES
    max_unacked_bytes: int = DEFAULT_LINK_BYTES
    max_unacked_node: int = DEFAULT_NODE_MESSAGES
    max_unacked_node_bytes: int = DEFAULT_NODE_BYTES
    max_deliveries: int = DEFAULT_MAX_DELIVERIES
    retry_budget: float = DEFAULT_BUDGET_RATIO
    streams: int = DEFAULT_STREAMS
    batch: str = "auto"
    write_buffer: int = DEFAULT_WRITE_BUFFER
    overflow: str = DEFAULT_OVERFLOW
    max_buffered: int = DEFAULT_MAX_BUFFERED
    max_frames_per_second: float = 0.0
    hold_timeout: float = DEFAULT_HOLD_TIMEOUT
    drain_grace: float = 10.0
    owner_timeout: float = 2.0
    bus_hold: float = DEFAULT_BUS_HOLD
    heartbeat: float = 2.0
    node_ttl: float = 10.0
    log_level: str = DEFAULT_LOG_LEVEL
    log_format: str = DEFAULT_LOG_FORMAT
    metrics_public: bool = False
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None
    proxy_protocol: bool = False
    proxy_header_timeout: float = DEFAULT_HEADER_TIMEOUT
    admin_tls_cert: str | None = None
    admin_tls_key: str | None = None
    upstream_tls: bool = False
    upstream_tls_ca: str | None = None
    upstream_tls_cert: str | None = None
    upstream_tls_key: str | None = None
    handoff_socket: str | None = None
    take_over: str | None = None


def _int(minimum: int) -> Callable[[str, Any], int]:
    def parse(key: str, value: Any) -> int:
        if isinstance(value, float) and not value.is_integer():  # 1.5, inf, nan from TOML
            raise ConfigError(key, f"expected a whole number, got {value!r}")
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ConfigError(key, f"expected a whole number, got {value!r}") from None
        if isinstance(value, bool) or number < minimum:
            raise ConfigError(key, f"must be at least {minimum}, got {value!r}")
        return number

    return parse


def _seconds(minimum: float, unit: str = "seconds") -> Callable[[str, Any], float]:
    def parse(key: str, value: Any) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(key, f"expected {unit}, got {value!r}") from None
        if not math.isfinite(number):
            raise ConfigError(key, f"expected a finite number of {unit}, got {value!r}")
        if isinstance(value, bool) or number < minimum:
            raise ConfigError(key, f"must be at least {minimum}, got {value!r}")
        return number

    return parse


def _choice(options: Sequence[str]) -> Callable[[str, Any], str]:
    def parse(key: str, value: Any) -> str:
        if value not in options:
            raise ConfigError(key, f"must be one of {', '.join(options)}, got {value!r}")
        return str(value)

    return parse


def _bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(key, f"expected true or false, got {value!r}")


def _text(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(key, "must be a non-empty string")
    return value


def _optional_text(key: str, value: Any) -> str | None:
    return None if value in (None, "") else _text(key, value)


def _address(key: str, value: Any) -> Address:
    return parse_address(key, str(value))


def _addresses(key: str, value: Any) -> tuple[Address, ...]:
    """Upstream addresses: a comma-separated string or a list; port 0 is refused."""
    if not isinstance(value, str | list | tuple):
        raise ConfigError(key, f"expected HOST:PORT items, got {value!r}")
    items = value.split(",") if isinstance(value, str) else value
    addresses = tuple(parse_address(key, str(item).strip()) for item in items if str(item).strip())
    for address in addresses:
        if address.port == 0:
            raise ConfigError(key, f"{address} needs a port in 1-65535")
    return addresses


#: The Redis URL kinds a node can be given (``node.redis.CLIENT_KINDS`` builds each).
def _redis(key: str, value: Any) -> str | None:
    """One URL, or several (repeated flag, list, comma-separated): shards, kept comma-joined
    in the order given (``placement.split_urls`` reads them back)."""
    if value in (None, "", [], ()):
        return None
    items = value if isinstance(value, list | tuple) else [value]
    urls = [url for item in items for url in split_urls(str(item))]
    for text in urls:
        scheme = text.partition("://")[0].lower() if "://" in text else ""
        if scheme not in REDIS_SCHEMES:
            known = ", ".join(f"{kind}://" for kind in REDIS_SCHEMES)
            raise ConfigError(key, f"expected a {known} URL, got {redact_url(text)!r}")
        if is_sentinel_url(text):
            parse_sentinel_url(text, key=key)
    return ",".join(urls) or None


PARSERS: dict[str, Callable[[str, Any], Any]] = {
    "listen": _address,
    "admin": _address,
    "upstream": _addresses,
    "redis": _redis,
    "redis_password_file": _optional_text,
    "node_id": _text,
    "framing": _choice(tuple(FRAMERS)),
    "max_frame": _int(1),
    "routing": _choice(ROUTING),
    "max_connections": _int(1),
    "max_connections_per_ip": _int(0),
    "accept_rate": _seconds(0, "connections per second"),
    "idle_timeout": _seconds(0),
    "lifecycle_events": _bool,
    "workers": _int(1),
    "admin_token": _optional_text,
    "key_prefix": _text,
    "ready_timeout": _seconds(0.1),
    "alive_timeout": _seconds(0.1),
    "upstream_queue": _int(1),
    "max_unacked": _int(1),
    "max_unacked_bytes": _int(1),
    "max_unacked_node": _int(1),
    "max_unacked_node_bytes": _int(1),
    "max_deliveries": _int(1),
    "retry_budget": _seconds(0, "a fraction of the first deliveries"),
    "streams": _int(1),
    "batch": _choice(BATCH_MODES),
    "write_buffer": _int(1024),
    "overflow": _choice(OVERFLOW_POLICIES),
    "max_buffered": _int(0),
    "max_frames_per_second": _seconds(0, "messages per second"),
    "hold_timeout": _seconds(0),
    "drain_grace": _seconds(0),
    "owner_timeout": _seconds(0.05),
    "bus_hold": _seconds(0),
    "heartbeat": _seconds(0.1),
    "node_ttl": _seconds(0.5),
    "log_level": _choice(LOG_LEVELS),
    "log_format": _choice(LOG_FORMATS),
    "metrics_public": _bool,
    "tls_cert": _optional_text,
    "tls_key": _optional_text,
    "tls_client_ca": _optional_text,
    "proxy_protocol": _bool,
    "proxy_header_timeout": _seconds(0.1),
    "admin_tls_cert": _optional_text,
    "admin_tls_key": _optional_text,
    "upstream_tls": _bool,
    "upstream_tls_ca": _optional_text,
    "upstream_tls_cert": _optional_text,
    "upstream_tls_key": _optional_text,
    "handoff_socket": _optional_text,
    "take_over": _optional_text,
}

PAIRED = (
    ("tls_cert", "tls_key"),
    ("tls_key", "tls_cert"),
    ("tls_client_ca", "tls_cert"),
    ("admin_tls_cert", "admin_tls_key"),
    ("admin_tls_key", "admin_tls_cert"),
    ("upstream_tls_cert", "upstream_tls_key"),
    ("upstream_tls_key", "upstream_tls_cert"),
)


def flag_name(key: str) -> str:
    return "--" + key.replace("_", "-")


def env_name(key: str) -> str:
    return ENV_PREFIX + key.upper()


def read_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as file:
            return tomllib.load(file)
    except OSError as error:
        raise ConfigError("config", f"cannot read {path}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError("config", f"{path} is not valid TOML: {error}") from None


def load_config(
    flags: Mapping[str, Any],
    env: Mapping[str, str],
    toml: Mapping[str, Any] | None = None,
) -> NodeConfig:
    """Merge flag > env > TOML > default, parse each value, check the combination."""
    known = {spec.name for spec in fields(NodeConfig)}
    for key in toml or {}:
        if key.replace("-", "_") not in known:
            raise ConfigError(key, "unknown setting in the config file")
    file_values = {key.replace("-", "_"): value for key, value in (toml or {}).items()}
    values: dict[str, Any] = {}
    for name in known:
        if flags.get(name) is not None:
            raw, key = flags[name], flag_name(name)
        elif env.get(env_name(name)) is not None:
            raw, key = env[env_name(name)], env_name(name)
        elif name in file_values:
            raw, key = file_values[name], name
        else:
            continue
        values[name] = PARSERS[name](key, raw)
    if values.get("take_over") and "node_id" not in values:
        values["node_id"] = ""  # the node id of the process it takes over from
    config = NodeConfig(**values)
    check_config(config)
    return config


def check_config(config: NodeConfig) -> None:
    if not config.admin.loopback and not config.admin_token:
        raise ConfigError("--admin-token", f"required when the admin API listens on {config.admin}")
    if config.workers > 1 and not config.redis:
        raise ConfigError("--workers", "more than one worker needs --redis (workers form a fleet)")
    if config.redis_password_file and not config.redis:
        raise ConfigError("--redis-password-file", "needs --redis (a password for which Redis?)")
    for name, needed in PAIRED:
        if getattr(config, name) and not getattr(config, needed):
            raise ConfigError(flag_name(name), f"needs {flag_name(needed)}")
    if config.node_ttl <= config.heartbeat:
        raise ConfigError("--node-ttl", "must be longer than --heartbeat")
    for name in ("handoff_socket", "take_over"):
        if getattr(config, name) and config.workers > 1:
            raise ConfigError(flag_name(name), "a handoff moves one process: not with --workers")
