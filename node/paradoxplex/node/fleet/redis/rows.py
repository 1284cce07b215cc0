"""How fleet records are written into Redis and read back: the row codecs (no I/O here).

Rules:
- A session is one packed row: a positional JSON array (no field names, no uuid), stored under
  its uuid's 16 raw bytes (``uuid_key``); its owner's incarnation is the last item (a row of
  an earlier release has none: it reads as incarnation ``""``). Raw ids sort as the uuids'
  hex text does, so a paging cursor (a uuid, or any hex prefix of one) becomes 16 bytes by
  ``cursor_key``; anything else is ``InvalidRequest("cursor", ...)``.
- A node record is a hash: scalars as they are, maps and lists as orjson (``hash_fields``).
- An upstream is one orjson value in a hash.
- Reading never raises on a malformed record: it is logged (without its payload) and skipped.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from redis.typing import EncodableT, FieldT

from paradoxplex.shared.errors import ConfigError, InvalidRequest
from paradoxplex.shared.fleet import NodeRecord
from paradoxplex.shared.sessions import SessionInfo, SessionState
from paradoxplex.shared.upstreams import UpstreamSpec

log = logging.getLogger("paradoxplex.node.fleet")

_STATES = {state.value: index for index, state in enumerate(SessionState)}
_STATE_OF = list(SessionState)


# -- scalars -------------------------------------------------------------------------------


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def texts(values: Iterable[bytes | str]) -> list[str]:
    """Decoded and sorted (set members come back in no order)."""
    return sorted(text(value) for value in values)


def raw(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else value


def optional_raw(value: bytes | str | None) -> bytes | None:
    return None if value is None else raw(value)


def milliseconds(seconds: float) -> int:
    """A TTL in whole milliseconds, at least 1 (Redis refuses 0)."""
    return max(1, math.ceil(seconds * 1000))


def hash_fields(record: Mapping[str, Any]) -> dict[FieldT, EncodableT]:
    """Hash fields of a record: scalars as they are, maps and lists (labels) as orjson."""
    return {
        name: orjson.dumps(value) if isinstance(value, dict | list) else value
        for name, value in record.items()
    }


def decoded_fields(reply: Mapping[Any, Any]) -> dict[str, Any]:
    return {text(key): text(value) for key, value in reply.items()}


# -- sessions ------------------------------------------------------------------------------


def uuid_key(client_uuid: str) -> bytes:
    """A socket's ``client_uuid`` as the 16 raw bytes of its UUID (ValueError when it is not
    one): the key its row is stored under."""
    return uuid.UUID(client_uuid).bytes


def client_uuid_of(key: bytes | str) -> str:
    """The ``client_uuid`` (uuid text) of a 16-byte key."""
    return str(uuid.UUID(bytes=raw(key)))


def cursor_key(given: str) -> bytes:
    """A paging cursor (a uuid, or any hex prefix of one) as 16 bytes that sort alike."""
    digits = given.replace("-", "").lower()
    if len(digits) > 32 or any(c not in "0123456789abcdef" for c in digits):
        raise InvalidRequest("cursor", "not a cursor this API gave out")
    return bytes.fromhex(digits.ljust(32, "0"))


def pack_session(info: SessionInfo) -> bytes:
    """A session as a compact row: a JSON array, positional (no field names, no uuid)."""
    return orjson.dumps(
        [
            info.node_id,
            info.remote,
            info.connected_at,
            _STATES[info.state.value],
            info.labels or 0,
            info.bytes_in,
            info.bytes_out,
            info.messages_in,
            info.messages_out,
            info.incarnation,
        ]
    )


def unpack_session(key: bytes, row: bytes | None) -> SessionInfo | None:
    """The session stored under ``key``; None when absent or malformed (logged)."""
    if not row:
        return None
    try:
        node, remote, at, state, labels, b_in, b_out, m_in, m_out, *rest = orjson.loads(row)
        return SessionInfo(
            client_uuid=str(uuid.UUID(bytes=key)),
            node_id=str(node),
            remote=str(remote),
            connected_at=float(at),
            state=_STATE_OF[int(state)],
            labels={str(k): str(v) for k, v in dict(labels or {}).items()},
            bytes_in=int(b_in),
            bytes_out=int(b_out),
            messages_in=int(m_in),
            messages_out=int(m_out),
            incarnation=str(rest[0]) if rest else "",
        )
    except (ValueError, TypeError, IndexError, orjson.JSONDecodeError):
        log.warning("ignored a malformed session record in Redis")
        return None


def incarnation_of(row: bytes) -> str:
    """The incarnation that wrote a packed row (``""``: a row of an earlier release, or one
    that cannot be read)."""
    try:
        items = orjson.loads(row)
    except orjson.JSONDecodeError:
        return ""
    return str(items[9]) if isinstance(items, list) and len(items) > 9 else ""


# -- nodes and upstreams -------------------------------------------------------------------


def decode_node(reply: Mapping[Any, Any]) -> NodeRecord | None:
    """A node record from its hash; None when absent or malformed (logged)."""
    if not reply:
        return None
    data = decoded_fields(reply)
    try:
        return NodeRecord.from_dict(data)
    except (KeyError, ValueError, TypeError) as exc:
        log.warning("skipping a malformed node record %r: %s", data.get("id"), exc)
        return None


def encode_upstream(spec: UpstreamSpec) -> bytes:
    return orjson.dumps(spec.to_dict())


def decode_upstream(upstream_id: str, value: bytes | str) -> UpstreamSpec | None:
    """An upstream from its stored value; None when malformed (logged)."""
    try:
        return UpstreamSpec.from_dict(orjson.loads(value))
    except (ConfigError, InvalidRequest, ValueError) as exc:
        log.warning("skipping a malformed upstream record %r: %s", upstream_id, exc)
        return None
