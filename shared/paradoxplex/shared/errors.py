"""The one exception tree of paradoxplex.

    ParadoxplexError
    ├─ ConfigError(key, reason)              a bad setting: one line, exit 2
    ├─ InvalidRequest(field, reason)         bad input to the admin API: 400
    ├─ FramingError                          the peer's fault, closes that socket
    │  ├─ FrameTooLarge(size, limit)
    │  └─ BadProxyHeader(reason)           a missing or malformed PROXY protocol header
    ├─ UpstreamError
    │  └─ UpstreamUnavailable(upstream_id)
    ├─ FleetError                            each says what became of the action: ``outcome``
    │  ├─ FleetUnavailable(reason)           Redis unreachable
    │  ├─ OwnerTimeout(client_uuid, node)    the owner node did not answer in time
    │  └─ Unlocated(client_uuid, silent)     nodes did not say in time whether they hold it
    ├─ UnknownSession(client_uuid)
    ├─ UnknownUpstream(upstream_id)
    ├─ Conflict(reason)                      the request clashes with the current state
    │  └─ ActionInProgress(key)              a call with this idempotency key is acting now
    ├─ KeyReused(key)                        an idempotency key seen with another request
    └─ HandoffError(step, reason)            a hot handoff stopped at this step
       └─ HandoffRefused(reason)             the two processes are not compatible

Messages are built from fields, never from payload bytes. A ``FleetError``'s ``outcome`` is
``Outcome.UNKNOWN`` unless whoever raises it knows the action did not happen and will not
(``not_applied()`` gives a copy that says so).
"""

from __future__ import annotations

import enum
from typing import Self


class Outcome(enum.StrEnum):
    """What an error answer (503, 504) says about the action it answers."""

    NOT_APPLIED = "not_applied"  # it did not act, and will not
    UNKNOWN = "unknown"  # it may have acted, or may yet: retry with the same key


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
    """The fleet (Redis) could not do what was asked; ``outcome`` says what became of the
    action (``UNKNOWN`` unless known)."""

    outcome: Outcome = Outcome.UNKNOWN

    def not_applied(self) -> Self:
        """A copy that says the action did not happen and will not (raise it only then).
        Made field by field: ``copy.copy`` of an exception calls ``__init__`` with its message."""
        known = type(self).__new__(type(self), *self.args)
        known.__dict__.update(vars(self))
        known.outcome = Outcome.NOT_APPLIED
        return known


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


class ActionInProgress(Conflict):
    """Another call with the same idempotency key has not answered yet: try again later."""

    def __init__(self, key: str) -> None:
        super().__init__(f"a request with Idempotency-Key {key!r} is in progress; retry later")
        self.key = key


class KeyReused(ParadoxplexError):
    """An idempotency key seen before with another request (another body, socket or route)."""

    def __init__(self, key: str) -> None:
        super().__init__(f"Idempotency-Key {key!r} was used with another request")
        self.key = key


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
