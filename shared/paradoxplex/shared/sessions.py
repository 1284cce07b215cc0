"""Sessions (one per downstream socket) and the filters broadcasts apply to them.

Rules:
- A session is identified by its UUID in canonical lowercase 8-4-4-4-12 form.
- A session is *active* unless an admin paused it. Broadcast ``all`` reaches every session,
  ``active`` the unpaused ones, ``paused`` (the original's ``inactive``) the paused ones; a
  label filter ``key=value`` narrows any of them.
- Labels: at most ``MAX_LABELS`` per session, keys and values at most ``MAX_LABEL_LENGTH``
  characters, keys made of letters, digits and ``._-/``.
"""

from __future__ import annotations

import enum
import os
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from paradoxplex.shared.errors import InvalidRequest

MAX_LABELS = 32
MAX_LABEL_LENGTH = 128
LABEL_KEY_CHARS = "[A-Za-z0-9._/-]"
NO_LABELS: Mapping[str, str] = MappingProxyType({})
_LABEL_KEY = re.compile(f"{LABEL_KEY_CHARS}+")


class SessionState(enum.Enum):
    ACTIVE = "active"
    PAUSED = "paused"


class BroadcastTarget(enum.Enum):
    ALL = "all"
    ACTIVE = "active"
    PAUSED = "paused"


# The original's word for a paused socket, accepted wherever a state or a target is read.
ALIASES = {"inactive": "paused"}


def parse_state(text: object) -> SessionState:
    """``active`` or ``paused`` (``inactive`` too); ValueError otherwise."""
    return SessionState(ALIASES.get(text, text) if isinstance(text, str) else text)


def parse_target(text: object) -> BroadcastTarget:
    """``all``, ``active`` or ``paused`` (``inactive`` too); ValueError otherwise."""
    return BroadcastTarget(ALIASES.get(text, text) if isinstance(text, str) else text)


@dataclass(slots=True)
class SessionInfo:
    """What the fleet knows about one socket. Counters are updated by the node that holds it.
    ``labels`` are replaced whole, never changed in place: a socket without any shares one
    empty read-only map (most sockets have none). ``incarnation`` is the owner node's process
    that accepted it (``shared.incarnations``)."""

    client_uuid: str
    node_id: str
    remote: str
    connected_at: float
    state: SessionState = SessionState.ACTIVE
    labels: Mapping[str, str] = field(default_factory=lambda: NO_LABELS)
    bytes_in: int = 0
    bytes_out: int = 0
    messages_in: int = 0
    messages_out: int = 0
    incarnation: str = ""
    #: the number this node gave the socket's last message to an upstream (delivery ids
    #: ``(client_uuid, seq)``); part of the socket's state, not of the fleet's record
    seq: int = field(default=0, compare=False)

    @property
    def active(self) -> bool:
        return self.state is SessionState.ACTIVE

    def to_dict(self) -> dict[str, Any]:
        return {
            "uuid": self.client_uuid,
            "node": self.node_id,
            "incarnation": self.incarnation,
            "remote": self.remote,
            "connected_at": self.connected_at,
            "state": self.state.value,
            "labels": dict(self.labels),
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "messages_in": self.messages_in,
            "messages_out": self.messages_out,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SessionInfo:
        return cls(
            client_uuid=str(data["uuid"]),
            node_id=str(data["node"]),
            remote=str(data["remote"]),
            connected_at=float(data["connected_at"]),
            state=SessionState(data.get("state", "active")),
            labels={str(k): str(v) for k, v in dict(data.get("labels") or {}).items()},
            bytes_in=int(data.get("bytes_in", 0)),
            bytes_out=int(data.get("bytes_out", 0)),
            messages_in=int(data.get("messages_in", 0)),
            messages_out=int(data.get("messages_out", 0)),
            incarnation=str(data.get("incarnation", "")),
        )


class ClientUuids:
    """Random (version 4) UUIDs, as ``uuid.uuid4`` makes them, but drawn ``block`` at a time:
    one ``os.urandom`` call per ``block`` ids instead of one per id (a storm of new sockets
    pays it per socket). Every id keeps 122 random bits; ``uuid.UUID`` sets the RFC 4122
    version and variant bits."""

    def __init__(self, *, block: int = 256) -> None:
        self.block = block
        self._random = b""
        self._at = 0

    def new(self) -> str:
        at = self._at
        if at >= len(self._random):
            self._random = os.urandom(16 * self.block)
            at = 0
        self._at = at + 16
        return str(uuid.UUID(bytes=self._random[at : at + 16], version=4))

    def forget(self) -> None:
        """Drop the drawn bytes (a forked child must not hand out its parent's ids)."""
        self._random = b""
        self._at = 0


_IDS = ClientUuids()
os.register_at_fork(after_in_child=_IDS.forget)
new_client_uuid = _IDS.new


def canonical_uuid(text: str) -> str | None:
    """The canonical lowercase form of ``text``, or None when it is not a UUID."""
    try:
        value = uuid.UUID(text)
    except (ValueError, AttributeError, TypeError):
        return None
    canonical = str(value)
    return canonical if canonical == text.lower() else None


def parse_label(text: str) -> tuple[str, str]:
    """``"key=value"`` → ``("key", "value")``; raises InvalidRequest("label", ...) if bad."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise InvalidRequest("label", f"expected key=value, got {text[:64]!r}")
    check_label(key, value)
    return key, value


def check_label(key: str, value: str) -> None:
    if not _LABEL_KEY.fullmatch(key) or len(key) > MAX_LABEL_LENGTH:
        raise InvalidRequest("label", f"bad label key {key[:64]!r}")
    if len(value) > MAX_LABEL_LENGTH:
        raise InvalidRequest("label", f"label value for {key!r} is over {MAX_LABEL_LENGTH} chars")


def check_labels(labels: object) -> dict[str, str]:
    """Validate a label map from outside; raises InvalidRequest("labels", ...)."""
    if not isinstance(labels, dict):
        raise InvalidRequest("labels", "expected an object of string keys and string values")
    if len(labels) > MAX_LABELS:
        raise InvalidRequest("labels", f"at most {MAX_LABELS} labels")
    for key, value in labels.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise InvalidRequest("labels", "keys and values must be strings")
        check_label(key, value)
    return dict(labels)


def matches(
    info: SessionInfo, target: BroadcastTarget, label: tuple[str, str] | None = None
) -> bool:
    """Whether a broadcast to ``target`` (narrowed by ``label``) reaches this session."""
    if target is BroadcastTarget.ACTIVE and not info.active:
        return False
    if target is BroadcastTarget.PAUSED and info.active:
        return False
    return label is None or info.labels.get(label[0]) == label[1]
