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
    │  └─ OwnerTimeout(client_uuid, node)    the owner node did not answer in time
    ├─ UnknownSession(client_uuid)
    ├─ UnknownUpstream(upstream_id)
    ├─ Conflict(reason)                      the request clashes with the current state
    └─ HandoffError(step, reason)            a hot handoff stopped at this step
       └─ HandoffRefused(reason)             the two processes are not compatible

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


class HandoffError(ParadoxplexError):
    """A hot handoff did not happen; ``step`` is where it stopped (``handoff.steps.Step``
    value), ``reason`` one line saying why."""

    def __init__(self, step: str, reason: str) -> None:
        super().__init__(f"handoff stopped at {step}: {reason}")
        self.step = step
        self.reason = reason


class HandoffRefused(HandoffError):
    """The old and the new process cannot hand over (different terms, a handoff under way)."""

    def __init__(self, reason: str) -> None:
        super().__init__("hello", reason)
        Exception.__init__(self, f"handoff refused: {reason}")
