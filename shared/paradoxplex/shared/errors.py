"""The one exception tree of paradoxplex.

    ParadoxplexError
    ├─ ConfigError(key, reason)              a bad setting: one line, exit 2
    ├─ InvalidRequest(field, reason)         bad input to the admin API: 400
    ├─ FramingError                          the peer's fault, closes that socket
    │  ├─ FrameTooLarge(size, limit)
    │  └─ BadProxyHeader(reason)           a missing or malformed PROXY protocol header
    ├─ UpstreamError
    │  └─ UpstreamUnavailable(upstream_id)
    ├─ FleetError
    │  ├─ FleetUnavailable(reason)           Redis unreachable
    │  ├─ OwnerTimeout(client_uuid, node)    the owner node did not answer in time
    │  └─ Unlocated(client_uuid, silent)     nodes did not say in time whether they hold it
    ├─ UnknownSession(client_uuid)
    ├─ UnknownUpstream(upstream_id)
    └─ Conflict(reason)                      the request clashes with the current state

Messages are built from fields, never from payload bytes.
"""

from __future__ import annotations


class ParadoxplexError(Exception):
    """Base of every error paradoxplex raises on purpose."""


class ConfigError(ParadoxplexError):
    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


class InvalidRequest(ParadoxplexError):
    """A request from outside (admin API body, query, path) that cannot be accepted."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class FramingError(ParadoxplexError):
    """The peer sent bytes that cannot be framed."""


class FrameTooLarge(FramingError):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"frame of {size} bytes exceeds the limit of {limit} bytes")
        self.size = size
        self.limit = limit


class BadProxyHeader(FramingError):
    def __init__(self, reason: str) -> None:
        super().__init__(f"bad PROXY protocol header: {reason}")
        self.reason = reason


class UpstreamError(ParadoxplexError):
    """Something is wrong with an upstream."""


class UpstreamUnavailable(UpstreamError):
    def __init__(self, upstream_id: str, reason: str = "unavailable") -> None:
        super().__init__(f"upstream {upstream_id}: {reason}")
        self.upstream_id = upstream_id
        self.reason = reason


class FleetError(ParadoxplexError):
    """The fleet (Redis) could not do what was asked."""


class FleetUnavailable(FleetError):
    def __init__(self, reason: str) -> None:
        super().__init__(f"fleet state unavailable: {reason}")
        self.reason = reason


class OwnerTimeout(FleetError):
    def __init__(self, client_uuid: str, node: str) -> None:
        super().__init__(f"node {node}, owner of socket {client_uuid}, did not answer in time")
        self.client_uuid = client_uuid
        self.node = node


class Unlocated(FleetError):
    """The fleet state does not know a socket, and the nodes named in ``silent`` (comma
    separated; empty: unknown) did not say in time whether they hold it: it may exist (so this
    is no 404); nothing was done."""

    def __init__(self, client_uuid: str, silent: str) -> None:
        nodes = silent or "some nodes"
        super().__init__(
            f"socket {client_uuid} is not in the fleet state and {nodes} did not say in time "
            "whether they hold it; nothing was done"
        )
        self.client_uuid = client_uuid
        self.silent = silent


class UnknownSession(ParadoxplexError):
    def __init__(self, client_uuid: str) -> None:
        super().__init__(f"no socket {client_uuid}")
        self.client_uuid = client_uuid


class UnknownUpstream(ParadoxplexError):
    def __init__(self, upstream_id: str) -> None:
        super().__init__(f"no upstream {upstream_id}")
        self.upstream_id = upstream_id


class Conflict(ParadoxplexError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
