"""The parts of the admin API's OpenAPI document that routes share: schemas, parameters and
error answers (``components``), as data.

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

from paradoxplex.admin.inputs import BASE64_PATTERN, CURSOR_PATTERN, DEFAULT_LIMIT, MAX_LIMIT
from paradoxplex.shared import idempotency
from paradoxplex.shared.errors import Outcome
from paradoxplex.shared.sessions import LABEL_KEY_CHARS, MAX_LABEL_LENGTH, MAX_LABELS
from paradoxplex.shared.upstreams import MAX_HOST_LENGTH

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


def list_of(item: str) -> Schema:
    return {
        "type": "object",
        "required": ["items", "cursor"],
        "properties": {
            "items": {"type": "array", "items": schema(item)},
            "cursor": {"type": ["string", "null"], "description": "opaque; null: last page"},
        },
    }


def socket_list() -> Schema:
    page = list_of("Socket")
    page["required"] = [*page["required"], "partial"]
    page["properties"]["partial"] = {
        "type": "boolean",
        "description": "true when the fleet state (Redis) could not be read: the page holds "
        "only the sockets of the node that answered",
    }
    return page


def one_key(key: str, value: Schema) -> Schema:
    return {
        "type": "object",
        "required": [key],
        "properties": {key: value},
        "additionalProperties": False,
    }


TEXT: Schema = {"type": "string", "minLength": 1, "description": "sent as UTF-8"}
BASE64: Schema = {
    "type": "string",
    "minLength": 1,
    "pattern": f"^{BASE64_PATTERN}$",
    "contentEncoding": "base64",
    "description": "standard alphabet, padded",
}
HOST: Schema = {
    "type": "string",
    "maxLength": MAX_HOST_LENGTH,
    "anyOf": [
        {"format": "ipv4"},
        {"format": "ipv6"},
        # the last label not all digits: 1.2.3 is no hostname, and no IPv4 address either
        {"format": "hostname", "pattern": "[A-Za-z-][A-Za-z0-9-]*$"},
    ],
    "description": "an IP address (IPv6 without brackets) or an RFC 1123 hostname",
}
INCARNATION: Schema = {
    "type": "string",
    "description": "the node process that wrote it: new random hex at each start (empty in a "
    "record of an earlier release)",
}
LABEL_MAP: Schema = {
    "type": "object",
    "maxProperties": MAX_LABELS,
    "propertyNames": {"pattern": f"^{LABEL_KEY_CHARS}+$", "maxLength": MAX_LABEL_LENGTH},
    "additionalProperties": {"type": "string", "maxLength": MAX_LABEL_LENGTH},
}


def schemas() -> Schema:
    number = {"type": "number"}
    count = {"type": "integer", "minimum": 0}
    return {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {
                        "code": {"type": "string"},
                        "message": {"type": "string"},
                        "outcome": OUTCOME,
                    },
                }
            },
        },
        "ErrorWithOutcome": error_with_outcome(),
        "Ok": {"type": "object", "properties": {"ok": {"const": True}}},
        "Payload": {"oneOf": [one_key("text", TEXT), one_key("base64", BASE64)]},
        "Labels": LABEL_MAP,
        "Broadcast": {
            "type": "object",
            "required": ["target"],
            "properties": {
                "target": {"enum": ["all", "active", "paused", "inactive"]},
                "label": LABEL
                | {"type": ["string", "null"], "description": "key=value; empty or null: any"},
                "text": TEXT,
                "base64": BASE64,
            },
            "oneOf": [{"required": ["text"]}, {"required": ["base64"]}],
            "additionalProperties": False,
        },
        "BroadcastResult": {
            "type": "object",
            "properties": {"delivered_local": count},
        },
        "Node": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "incarnation": INCARNATION,
                "listen": {"type": "string"},
                "admin_url": {"type": "string"},
                "started_at": {**number, "description": "when this incarnation started (epoch s)"},
                "sockets": count,
                "state": {
                    "enum": ["up", "draining", "degraded"],
                    "description": "draining: accepts no new sockets; degraded: lost Redis",
                },
                "messages_in": {**count, "description": "frames read from its sockets, ever"},
                "messages_out": {**count, "description": "messages written to its sockets"},
                "drops": {**count, "description": "sum of paradoxplex_drops, every reason"},
                "heartbeat_at": {
                    **number,
                    "description": "the node's clock (epoch s) when it wrote this record; "
                    "counters are as of then: diff two records for rates",
                },
                "last_handoff": {
                    "type": "object",
                    "description": "the hot handoff that made this process the node (absent "
                    "when it started plainly): when, from which process, sockets moved and "
                    "kept by the old process, the pause its sockets saw",
                    "properties": {
                        "at": number,
                        "from_pid": count,
                        "moved": count,
                        "kept": count,
                        "pause_ms": number,
                    },
                },
            },
        },
        "NodeList": list_of("Node"),
        "Socket": {
            "type": "object",
            "properties": {
                "uuid": {"type": "string", "format": "uuid"},
                "node": {"type": "string"},
                "incarnation": {
                    **INCARNATION,
                    "description": "the incarnation of its node that holds it",
                },
                "remote": {"type": "string"},
                "connected_at": number,
                "state": {"enum": ["active", "paused"]},
                "labels": LABEL_MAP,
                "bytes_in": count,
                "bytes_out": count,
                "messages_in": count,
                "messages_out": count,
            },
        },
        "SocketList": socket_list(),
        "UpstreamCreate": {
            "type": "object",
            "required": ["host", "port"],
            "properties": {
                "host": HOST,
                "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                "ready_timeout": {"type": "number", "minimum": 0.1, "maximum": 3600},
                "alive_timeout": {"type": "number", "minimum": 0.1, "maximum": 3600},
                "tls": {
                    "type": "boolean",
                    "description": "reach it over TLS with the nodes' own --upstream-tls-* "
                    "files (no key or certificate is sent through this API)",
                },
                "server_name": {
                    "anyOf": [HOST, {"type": "null"}],
                    "description": "the name its certificate is checked against (absent or "
                    "null: the host); used only with tls",
                },
            },
            "additionalProperties": False,
        },
        "Upstream": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "host": {"type": "string"},
                "port": {"type": "integer"},
                "ready_timeout": number,
                "alive_timeout": number,
                "mode": {"enum": ["active", "draining"]},
                "tls": {"type": "boolean"},
                "server_name": {"type": ["string", "null"]},
                "nodes": {
                    "type": "object",
                    "description": "node id → that node's health view",
                    "additionalProperties": schema("UpstreamView"),
                },
            },
        },
        "UpstreamList": list_of("Upstream"),
        "UpstreamView": {
            "type": "object",
            "description": "one node's view of one upstream; the dashboard shows an absent "
            "key as a dash",
            "properties": {
                "state": {"enum": ["connecting", "ready", "backoff", "draining", "removed"]},
                "ready": {"type": "boolean", "description": "in rotation"},
                "live": {"type": "boolean"},
                "since": {**number, "description": "epoch s of the last state change"},
                "queued": count,
                "batch": {
                    "type": ["boolean", "null"],
                    "description": "the batch RPC is used (null: not probed yet)",
                },
                "error": {"type": ["string", "null"]},
                "sent": {**count, "description": "messages sent to it by this node"},
                "received": {**count, "description": "messages received from it"},
                "errors": {**count, "description": "stream errors"},
                "rtt_ms": {"type": ["number", "null"], "description": "round-trip time"},
                "reason": {"type": ["string", "null"], "description": "why in this state"},
            },
        },
        "Live": {
            "type": "object",
            "properties": {
                "status": {"const": "ok"},
                "node": {"type": "string", "description": "this node's id"},
                "incarnation": INCARNATION,
            },
        },
        "Ready": {
            "type": "object",
            "required": ["ready"],
            "properties": {
                "ready": {"type": "boolean"},
                "listening": {"type": "boolean"},
                "draining": {"type": "boolean"},
                "upstreams_ready": count,
                "fleet": {
                    "type": "string",
                    "description": "ok, degraded (Redis unreachable: local traffic goes on), "
                    "or the reason the fleet state failed",
                },
            },
            "additionalProperties": True,
        },
    }


def responses() -> Schema:
    return {
        name: {
            "description": description,
            **json_body(schema("ErrorWithOutcome" if status in OUTCOME_RESPONSES else "Error")),
        }
        for status, (name, description) in ERROR_RESPONSES.items()
    }


def error_with_outcome() -> Schema:
    """``Error`` whose ``error`` says ``outcome`` (the 503 and 504 answers)."""
    return {
        "allOf": [
            schema("Error"),
            {"properties": {"error": {"required": ["outcome"]}}},
        ]
    }
