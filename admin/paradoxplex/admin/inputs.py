"""What the admin API accepts: request bodies and query strings in, plain values out.

Rules:
- No I/O here; each function raises ``InvalidRequest(field, reason)`` (→ 400 ``bad_request``,
  the message names the field) or, for a body that is not JSON, ``ApiError(400, "bad_json")``.
- A payload is ``{"text": "..."}`` (sent as UTF-8) or ``{"base64": "..."}`` (strict: the
  standard alphabet with padding); exactly one of them, never empty.
- Unknown body keys and unknown query parameters are refused, so a typo is never ignored.
- Socket lists: ``limit`` defaults to ``DEFAULT_LIMIT`` and is at most ``MAX_LIMIT``; an empty
  query value counts as absent; a parameter may be given once; a ``cursor`` is what a page
  gave out (hex digits and dashes, at most 36).
- The patterns here (``BASE64_PATTERN``, ``CURSOR_PATTERN``) are the ones the OpenAPI
  document states, so the two cannot drift apart.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from paradoxplex.admin.errors import ApiError
from paradoxplex.shared.errors import InvalidRequest
from paradoxplex.shared.sessions import (
    BroadcastTarget,
    SessionState,
    canonical_uuid,
    check_labels,
    parse_label,
    parse_state,
    parse_target,
)
from paradoxplex.shared.upstreams import UpstreamSpec

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
PAYLOAD_KEYS = frozenset({"text", "base64"})
BROADCAST_KEYS = PAYLOAD_KEYS | {"target", "label"}
UPSTREAM_KEYS = frozenset({"host", "port", "ready_timeout", "alive_timeout", "tls", "server_name"})
SOCKET_QUERY_KEYS = ("node", "state", "label", "limit", "cursor")
_LIMIT = re.compile(r"[0-9]{1,7}")
BASE64_PATTERN = "(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?"
CURSOR_PATTERN = "[0-9A-Fa-f-]{1,36}"
_BASE64 = re.compile(BASE64_PATTERN)
_CURSOR = re.compile(CURSOR_PATTERN)


@dataclass(frozen=True, slots=True)
class SocketQuery:
    """The filters and page of ``GET /v1/sockets``."""

    node: str | None = None
    state: SessionState | None = None
    label: tuple[str, str] | None = None
    limit: int = DEFAULT_LIMIT
    cursor: str | None = None


@dataclass(frozen=True, slots=True)
class BroadcastRequest:
    """The body of ``POST /v1/broadcast``."""

    target: BroadcastTarget
    label: tuple[str, str] | None
    payload: bytes


def parse_json(raw: bytes) -> Any:
    """Decode a request body; an empty or malformed body is a 400 ``bad_json``."""
    if not raw.strip():
        raise ApiError(400, "bad_json", "the body is empty; expected a JSON document")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ApiError(400, "bad_json", "the body is not valid JSON") from None


def parse_uuid(text: str) -> str:
    """A socket id from a path: must already be the canonical lowercase 8-4-4-4-12 form."""
    value = canonical_uuid(text)
    if value is None or value != text:
        raise InvalidRequest("uuid", f"expected a lowercase 8-4-4-4-12 UUID, got {text[:64]!r}")
    return value


def parse_payload(body: object, *, allowed: frozenset[str] = PAYLOAD_KEYS) -> bytes:
    """The payload of a body holding exactly one of ``text`` / ``base64``."""
    data = _object(body, allowed)
    given = PAYLOAD_KEYS & data.keys()
    if len(given) != 1:
        raise InvalidRequest("payload", 'give exactly one of "text" or "base64"')
    payload = _text(data["text"]) if "text" in given else decode_base64(data["base64"])
    if not payload:
        raise InvalidRequest(next(iter(given)), "the payload is empty")
    return payload


def parse_broadcast(body: object) -> BroadcastRequest:
    """``{"target": "all"|"active"|"paused", "label": "k=v" (optional), payload}``;
    ``inactive`` (the original's word) is ``paused``."""
    data = _object(body, BROADCAST_KEYS)
    try:
        target = parse_target(data.get("target"))
    except ValueError:
        raise InvalidRequest("target", "must be all, active or paused (or inactive)") from None
    label = data.get("label")
    if label is not None and not isinstance(label, str):
        raise InvalidRequest("label", "expected a key=value string")
    parsed = parse_label(label) if label else None
    return BroadcastRequest(target, parsed, parse_payload(data, allowed=BROADCAST_KEYS))


def parse_labels(body: object) -> dict[str, str]:
    """The bare label map of ``PUT /v1/sockets/{uuid}/labels``."""
    return check_labels(body)


def parse_upstream(body: object) -> UpstreamSpec:
    """``{"host", "port", "ready_timeout", "alive_timeout", "tls", "server_name"}``; all but
    host and port are optional."""
    return UpstreamSpec.from_dict(_object(body, UPSTREAM_KEYS))


def parse_socket_query(items: Iterable[tuple[str, str]]) -> SocketQuery:
    """The query string of ``GET /v1/sockets`` as (name, value) pairs, repeats included."""
    values = _single_values(items, SOCKET_QUERY_KEYS)
    state = values.get("state")
    label = values.get("label")
    cursor = values.get("cursor")
    if cursor is not None and not _CURSOR.fullmatch(cursor):
        raise InvalidRequest("cursor", "not a cursor this API gave out")
    return SocketQuery(
        node=values.get("node"),
        state=_state(state) if state else None,
        label=parse_label(label) if label else None,
        limit=_limit(values["limit"]) if "limit" in values else DEFAULT_LIMIT,
        cursor=cursor,
    )


def _single_values(items: Iterable[tuple[str, str]], known: tuple[str, ...]) -> dict[str, str]:
    values: dict[str, str] = {}
    for key, value in items:
        if key not in known:
            raise InvalidRequest(key, f"unknown query parameter (known: {', '.join(known)})")
        if key in values:
            raise InvalidRequest(key, "give this query parameter once")
        if value:
            values[key] = value
    return values


def _object(body: object, allowed: frozenset[str]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidRequest("body", "expected a JSON object")
    unknown = sorted(str(key) for key in body.keys() - allowed)
    if unknown:
        raise InvalidRequest(unknown[0], f"unknown key (known: {', '.join(sorted(allowed))})")
    return body


def _text(value: object) -> bytes:
    if not isinstance(value, str):
        raise InvalidRequest("text", "expected a string")
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequest("text", "not encodable as UTF-8 (lone surrogate)") from None


def decode_base64(value: object) -> bytes:
    """Strict base64 (standard alphabet, padded); raises InvalidRequest("base64", ...)."""
    if not isinstance(value, str):
        raise InvalidRequest("base64", "expected a string")
    if not _BASE64.fullmatch(value):
        raise InvalidRequest("base64", "not valid base64 (standard alphabet, padded)")
    return binascii.a2b_base64(value.encode("ascii"), strict_mode=True)


def _state(text: str) -> SessionState:
    try:
        return parse_state(text)
    except ValueError:
        raise InvalidRequest("state", "must be active or paused (or inactive)") from None


def _limit(text: str) -> int:
    if not _LIMIT.fullmatch(text) or not 1 <= int(text) <= MAX_LIMIT:
        raise InvalidRequest("limit", f"must be a whole number from 1 to {MAX_LIMIT}")
    return int(text)


# Bodies sent with these types are read as JSON too: ``curl -d`` sends the form type.
LENIENT_TYPES = frozenset({"application/x-www-form-urlencoded", "text/plain"})


def check_content_type(header: str | None) -> None:
    """A body is JSON: ``application/json`` (or ``+json``), no type, or a type that plain
    ``curl -d`` and friends send (``LENIENT_TYPES``); others (multipart, XML...) are refused."""
    if header is None:
        return
    mime = header.partition(";")[0].strip().lower()
    if mime in LENIENT_TYPES:
        return
    if mime != "application/json" and not mime.endswith("+json"):
        raise InvalidRequest("content-type", f"expected application/json, got {mime[:64]!r}")
