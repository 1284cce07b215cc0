"""The upstream registry's records: what an upstream is, and one node's view of its health."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from paradoxplex.shared.config import Address, parse_address
from paradoxplex.shared.errors import ConfigError, InvalidRequest

DEFAULT_READY_TIMEOUT = 10.0
DEFAULT_ALIVE_TIMEOUT = 30.0


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
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UpstreamSpec:
        """Parse an upstream from outside (an admin request, or a record read back from
        Redis); raises ``InvalidRequest`` naming the field."""
        if not isinstance(data, dict):
            raise InvalidRequest("upstream", "expected an object")
        host = data.get("host")
        port = data.get("port")
        if not isinstance(host, str) or not host.strip("[]"):
            raise InvalidRequest("host", "must be a non-empty string")
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise InvalidRequest("port", "must be a number in 1-65535")
        ready = _timeout("ready_timeout", data.get("ready_timeout", DEFAULT_READY_TIMEOUT))
        alive = _timeout("alive_timeout", data.get("alive_timeout", DEFAULT_ALIVE_TIMEOUT))
        try:
            mode = UpstreamMode(data.get("mode", "active"))
        except ValueError:
            raise InvalidRequest("mode", "must be active or draining") from None
        return cls(host.strip("[]"), port, ready, alive, mode)

    @classmethod
    def parse(cls, text: str, *, ready_timeout: float, alive_timeout: float) -> UpstreamSpec:
        address = parse_address("upstream", text)
        if address.port == 0:
            raise ConfigError("upstream", f"{address} needs a port in 1-65535")
        return cls(address.host, address.port, ready_timeout, alive_timeout)


def _timeout(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.1 <= value <= 3600:
        raise InvalidRequest(key, "must be seconds between 0.1 and 3600")
    return float(value)
