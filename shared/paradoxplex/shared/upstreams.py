"""The upstream registry's records: what an upstream is, and one node's view of its health.

Rules:
- An upstream's host is an IP address (IPv4, or IPv6 without brackets or zone) or a hostname
  per RFC 1123: dot-separated labels of 1-63 letters, digits and inner hyphens, at most
  ``MAX_HOST_LENGTH`` characters, the last label not all digits. Nothing else (no spaces,
  control characters, underscores or trailing dot): the host becomes the upstream's id, which
  every node stores, shows and logs. (``--upstream [v6]:PORT`` takes its brackets off first.)
- A port is a whole number in 1-65535 (a JSON ``6133.0`` is the whole number 6133).
- ``tls`` (default false) reaches the upstream over TLS, with the node's own
  ``--upstream-tls-*`` files; ``server_name`` (a hostname, as the host's rules) is the name its
  certificate is checked against instead of the host, and matters only with ``tls``. No key or
  certificate travels in a record: the fleet stores these records in Redis.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from dataclasses import dataclass
from typing import Any

from paradoxplex.shared.config import (
    DEFAULT_ALIVE_TIMEOUT,
    DEFAULT_READY_TIMEOUT,
    Address,
    parse_address,
)
from paradoxplex.shared.errors import ConfigError, InvalidRequest

MAX_HOST_LENGTH = 253
#: Where ``upstream-echo`` and the SDK listen by default (the original's example upstream).
EXAMPLE_UPSTREAM = Address("127.0.0.1", 45888)
#: seconds an SDK upstream takes at most to drain on SIGTERM (``UpstreamServer(grace=...)``)
UPSTREAM_GRACE = 10.0
_HOST_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


class UpstreamMode(enum.Enum):
    ACTIVE = "active"
    DRAINING = "draining"


@dataclass(frozen=True, slots=True)
class UpstreamSpec:
    """A registered upstream; its id is ``host:port``."""

    host: str
    port: int
    ready_timeout: float = DEFAULT_READY_TIMEOUT
    alive_timeout: float = DEFAULT_ALIVE_TIMEOUT
    mode: UpstreamMode = UpstreamMode.ACTIVE
    tls: bool = False
    server_name: str | None = None

    @property
    def id(self) -> str:
        return str(Address(self.host, self.port))

    @property
    def address(self) -> Address:
        return Address(self.host, self.port)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "host": self.host,
            "port": self.port,
            "ready_timeout": self.ready_timeout,
            "alive_timeout": self.alive_timeout,
            "mode": self.mode.value,
            "tls": self.tls,
            "server_name": self.server_name,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UpstreamSpec:
        """Parse an upstream from outside (an admin request, or a record read back from
        Redis); raises ``InvalidRequest`` naming the field."""
        if not isinstance(data, dict):
            raise InvalidRequest("upstream", "expected an object")
        host = data.get("host")
        if not isinstance(host, str) or not host:
            raise InvalidRequest("host", "must be a non-empty string")
        problem = host_problem(host)
        if problem is not None:
            raise InvalidRequest("host", problem)
        port = _port(data.get("port"))
        ready = _timeout("ready_timeout", data.get("ready_timeout", DEFAULT_READY_TIMEOUT))
        alive = _timeout("alive_timeout", data.get("alive_timeout", DEFAULT_ALIVE_TIMEOUT))
        try:
            mode = UpstreamMode(data.get("mode", "active"))
        except ValueError:
            raise InvalidRequest("mode", "must be active or draining") from None
        tls = data.get("tls", False)
        if not isinstance(tls, bool):
            raise InvalidRequest("tls", "must be true or false")
        return cls(host, port, ready, alive, mode, tls, _server_name(data.get("server_name")))

    @classmethod
    def parse(cls, text: str, *, ready_timeout: float, alive_timeout: float) -> UpstreamSpec:
        address = parse_address("upstream", text)
        if address.port == 0:
            raise ConfigError("upstream", f"{address} needs a port in 1-65535")
        problem = host_problem(address.host)
        if problem is not None:
            raise ConfigError("upstream", f"host {address.host!r} {problem}")
        return cls(address.host, address.port, ready_timeout, alive_timeout)


def _timeout(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.1 <= value <= 3600:
        raise InvalidRequest(key, "must be seconds between 0.1 and 3600")
    return float(value)


def _server_name(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise InvalidRequest("server_name", "must be a non-empty string")
    problem = host_problem(value)
    if problem is not None:
        raise InvalidRequest("server_name", problem)
    return value


def _port(value: Any) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise InvalidRequest("port", "must be a number in 1-65535")
    return value


def host_problem(host: str) -> str | None:
    """Why ``host`` is neither an IP literal nor an RFC 1123 hostname; None when it is one."""
    if not host.isascii() or not host.isprintable() or " " in host:
        return "must not hold spaces, control or non-ASCII characters"
    if host.startswith("[") or "%" in host:
        return "must be an IP address without brackets or zone (%)"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return None
    labels = host.split(".")
    if len(host) > MAX_HOST_LENGTH or not all(_HOST_LABEL.fullmatch(label) for label in labels):
        return (
            "must be an IP address or a hostname (RFC 1123: dot-separated labels of letters, "
            f"digits and inner hyphens, 1-63 characters each, {MAX_HOST_LENGTH} in all)"
        )
    if labels[-1].isdigit():
        return "is not a valid IP address"
    return None
