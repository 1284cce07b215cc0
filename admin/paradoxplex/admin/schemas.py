"""The parts of the admin API's OpenAPI document that routes share: references, parameters
and error answers (``components.responses``), as data; the named schemas are ``components``.

Rules:
- Patterns are whole-string (``^...$``) and come from the code that enforces them
  (``inputs``, ``shared.sessions``, ``shared.upstreams``); an empty query value is no filter,
  so the query schemas allow ``""``.
- Every error answer has the one error shape (``Error``); ``ERROR_RESPONSES`` names them by
  status. A 503 or 504 has ``outcome`` in it too (``ErrorWithOutcome``).
- ``IDEMPOTENCY_KEY`` is the header parameter of every action; its pattern is the one
  ``shared.idempotency`` enforces. Replays (errors included) carry ``Idempotent-Replayed``.
"""

from __future__ import annotations

from typing import Any

from paradoxplex.admin.inputs import CURSOR_PATTERN, DEFAULT_LIMIT, MAX_LIMIT
from paradoxplex.shared import idempotency
from paradoxplex.shared.errors import Outcome
from paradoxplex.shared.sessions import LABEL_KEY_CHARS, MAX_LABEL_LENGTH

JSON = "application/json"
Schema = dict[str, Any]


def ref(kind: str, name: str) -> Schema:
    return {"$ref": f"#/components/{kind}/{name}"}


def schema(name: str) -> Schema:
    return ref("schemas", name)


def json_body(body: Schema) -> Schema:
    return {"content": {JSON: {"schema": body}}}


ERROR_RESPONSES: dict[str, tuple[str, str]] = {
    "400": ("BadRequest", "bad input: bad_request (names the key) or bad_json"),
    "401": ("Unauthorized", "no or bad bearer token: unauthorized"),
    "404": ("NotFound", "unknown socket or upstream: not_found"),
    "409": (
        "Conflict",
        "the request clashes with the current state: conflict; or a request with its "
        "Idempotency-Key is in progress: in_progress (retry later with the same key)",
    ),
    "413": ("PayloadTooLarge", "the body is over the node's limit: payload_too_large"),
    "422": (
        "KeyReused",
        "the Idempotency-Key was used with another request: idempotency_key_reused",
    ),
    "500": ("Internal", "an unexpected error, logged by the node: internal"),
    "503": (
        "FleetUnavailable",
        "fleet state (Redis) unreachable: fleet_unavailable; outcome says whether the "
        "action happened",
    ),
    "504": (
        "OwnerTimeout",
        "the owner node did not answer in time: owner_timeout; outcome says whether the "
        "action happened",
    ),
}
#: Error answers whose body says ``outcome``.
OUTCOME_RESPONSES = frozenset({"503", "504"})

OUTCOME: Schema = {
    "enum": [str(outcome) for outcome in Outcome],
    "description": "503 and 504 only: not_applied, it did not act and will not; unknown, it "
    "may have acted or may yet (retry with the same Idempotency-Key)",
}


REPLAYED_HEADER = idempotency.REPLAYED_HEADER
REPLAYED: Schema = {
    "description": "true: this is the answer of the first call with this Idempotency-Key, "
    "which acted; this call did not act again",
    "schema": {"const": "true"},
}
IDEMPOTENCY_KEY: Schema = {
    "name": idempotency.HEADER,
    "in": "header",
    "required": False,
    "description": "any unique string (a UUID): the same key through any node acts at most "
    f"once within {idempotency.WINDOW / 60:g} minutes and answers as the first call did; "
    "send it again when retrying a 503, 504 or 409 in_progress",
    "schema": {
        "type": "string",
        "minLength": 1,
        "maxLength": idempotency.MAX_KEY_LENGTH,
        "pattern": f"^{idempotency.KEY_PATTERN}$",
    },
}


def path_param(name: str, description: str, value: Schema) -> Schema:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": value,
    }


UUID_PARAM = path_param(
    "uuid",
    "socket id, canonical lowercase 8-4-4-4-12 (otherwise 400)",
    {
        "type": "string",
        "format": "uuid",
        "pattern": "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
    },
)
UPSTREAM_PARAM = path_param(
    "id", "upstream id, HOST:PORT ([v6]:PORT), percent-encoded", {"type": "string"}
)
NODE_PARAM = path_param("id", "node id", {"type": "string"})
FILE_PARAM = path_param("name", "app.js, app.css, icon.svg, index.html", {"type": "string"})


def query(name: str, description: str, value: Schema) -> Schema:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": value,
    }


NO_FILTER: Schema = {"const": ""}
# key=value: a label key, "=", a value of at most MAX_LABEL_LENGTH characters of any kind
LABEL_FILTER = f"{LABEL_KEY_CHARS}{{1,{MAX_LABEL_LENGTH}}}=[\\s\\S]{{0,{MAX_LABEL_LENGTH}}}"
LABEL: Schema = {"type": "string", "pattern": f"^(?:{LABEL_FILTER})?$"}

SOCKET_QUERY: tuple[Schema, ...] = (
    query("node", "only sockets held by this node", {"type": "string"}),
    query(
        "state",
        "only active or paused sockets; empty: either",
        {"enum": ["active", "paused", "inactive", ""]},
    ),
    query("label", "only sockets with this label, as key=value; empty: any", LABEL),
    query(
        "limit",
        f"page size, default {DEFAULT_LIMIT} (also when empty), at most {MAX_LIMIT}",
        {
            "anyOf": [
                {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
                NO_FILTER,
            ],
            "default": DEFAULT_LIMIT,
        },
    ),
    query(
        "cursor",
        "the cursor of the previous page; empty: the first page",
        {"type": "string", "pattern": f"^(?:{CURSOR_PATTERN})?$"},
    ),
)


def responses() -> Schema:
    return {
        name: {
            "description": description,
            **json_body(schema("ErrorWithOutcome" if status in OUTCOME_RESPONSES else "Error")),
        }
        for status, (name, description) in ERROR_RESPONSES.items()
    }
