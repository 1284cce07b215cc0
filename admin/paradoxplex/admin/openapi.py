"""The OpenAPI 3.1 description of the admin API, served at ``GET /openapi.json``.

Rules:
- Every route the app serves is described here; a test compares the app's router with
  ``document()["paths"]``.
- Every route needs ``Authorization: Bearer <token>`` when the node has a token, except the
  probes ``/livez`` and ``/readyz`` (``security: []``). A node without a token serves the
  document without security and without 401 answers (``document(secured=False)``).
- Actions answer 200 ``{"ok": true}``; deletions answer 204 without a body; creation 201.
- Errors share one shape, ``{"error": {"code", "message"}}``.
- The document is exact: what it allows the API accepts, what it refuses the API refuses
  (a test runs schemathesis against a live node). Patterns are whole-string (``^...$``) and
  come from the code that enforces them; an empty query value is no filter, so the query
  schemas allow ``""``.
"""

from __future__ import annotations

from typing import Any

from paradoxplex.admin.inputs import BASE64_PATTERN, CURSOR_PATTERN, DEFAULT_LIMIT, MAX_LIMIT
from paradoxplex.shared.sessions import LABEL_KEY_CHARS, MAX_LABEL_LENGTH, MAX_LABELS
from paradoxplex.shared.upstreams import MAX_HOST_LENGTH

VERSION = "1"
JSON = "application/json"
Schema = dict[str, Any]


def _ref(kind: str, name: str) -> Schema:
    return {"$ref": f"#/components/{kind}/{name}"}


def _schema(name: str) -> Schema:
    return _ref("schemas", name)


def _json(schema: Schema) -> Schema:
    return {"content": {JSON: {"schema": schema}}}


def _ok(status: str, description: str, schema: Schema | None) -> Schema:
    answer: Schema = {"description": description}
    if schema is not None:
        answer.update(_json(schema))
    return {status: answer}


def _operation(
    operation_id: str,
    summary: str,
    answer: Schema,
    *,
    errors: tuple[str, ...] = (),
    params: tuple[Schema, ...] = (),
    body: str | None = None,
    open_probe: bool = False,
) -> Schema:
    """One operation; every secured one can answer 401 and 500, every body one 400 and 413."""
    responses: Schema = dict(answer)
    always = () if open_probe else ("401",)
    extra = ("400", "413") if body else ()
    for status in sorted({*errors, *always, *extra, "500"}):
        responses[status] = _ref("responses", ERROR_RESPONSES[status][0])
    operation: Schema = {"operationId": operation_id, "summary": summary, "responses": responses}
    if params:
        operation["parameters"] = list(params)
    if body:
        operation["requestBody"] = {"required": True, **_json(_schema(body))}
    if open_probe:
        operation["security"] = []
    return operation


ERROR_RESPONSES: dict[str, tuple[str, str]] = {
    "400": ("BadRequest", "bad input: bad_request (names the key) or bad_json"),
    "401": ("Unauthorized", "no or bad bearer token: unauthorized"),
    "404": ("NotFound", "unknown socket or upstream: not_found"),
    "409": ("Conflict", "the request clashes with the current state: conflict"),
    "413": ("PayloadTooLarge", "the body is over the node's limit: payload_too_large"),
    "500": ("Internal", "an unexpected error, logged by the node: internal"),
    "503": ("FleetUnavailable", "fleet state (Redis) unreachable: fleet_unavailable"),
    "504": ("OwnerTimeout", "the owner node did not answer in time: owner_timeout"),
}

UUID_PARAM: Schema = {
    "name": "uuid",
    "in": "path",
    "required": True,
    "description": "socket id, canonical lowercase 8-4-4-4-12 (otherwise 400)",
    "schema": {
        "type": "string",
        "format": "uuid",
        "pattern": "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
    },
}
UPSTREAM_PARAM: Schema = {
    "name": "id",
    "in": "path",
    "required": True,
    "description": "upstream id, HOST:PORT ([v6]:PORT), percent-encoded",
    "schema": {"type": "string"},
}
NODE_PARAM: Schema = {
    "name": "id",
    "in": "path",
    "required": True,
    "description": "node id",
    "schema": {"type": "string"},
}


def _query(name: str, description: str, schema: Schema) -> Schema:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


NO_FILTER: Schema = {"const": ""}
# key=value: a label key, "=", a value of at most MAX_LABEL_LENGTH characters of any kind
LABEL_FILTER = f"{LABEL_KEY_CHARS}{{1,{MAX_LABEL_LENGTH}}}=[\\s\\S]{{0,{MAX_LABEL_LENGTH}}}"
LABEL: Schema = {"type": "string", "pattern": f"^(?:{LABEL_FILTER})?$"}

SOCKET_QUERY: tuple[Schema, ...] = (
    _query("node", "only sockets held by this node", {"type": "string"}),
    _query(
        "state",
        "only active or paused sockets; empty: either",
        {"enum": ["active", "paused", "inactive", ""]},
    ),
    _query("label", "only sockets with this label, as key=value; empty: any", LABEL),
    _query(
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
    _query(
        "cursor",
        "the cursor of the previous page; empty: the first page",
        {"type": "string", "pattern": f"^(?:{CURSOR_PATTERN})?$"},
    ),
)

SOCKET_ERRORS = ("400", "404", "503", "504")


def _paths() -> Schema:
    return {
        "/v1/nodes": {
            "get": _operation(
                "listNodes",
                "live nodes of the fleet",
                _ok("200", "the nodes; cursor is always null", _schema("NodeList")),
                errors=("503",),
            )
        },
        "/v1/nodes/{id}/drain": {
            "post": _operation(
                "drainNode",
                "a node stops accepting sockets and drains",
                _ok("200", "the node's record", _schema("Node")),
                errors=("404", "409", "503", "504"),
                params=(NODE_PARAM,),
            )
        },
        "/v1/sockets": {
            "get": _operation(
                "listSockets",
                "sockets fleet-wide, one page at a time",
                _ok("200", "one page; pass cursor back for the next", _schema("SocketList")),
                errors=("400", "503"),
                params=SOCKET_QUERY,
            )
        },
        "/v1/sockets/{uuid}": {
            "get": _operation(
                "getSocket",
                "one socket: owner node, remote address, state, counters, labels",
                _ok("200", "the socket", _schema("Socket")),
                errors=SOCKET_ERRORS,
                params=(UUID_PARAM,),
            ),
            "delete": _operation(
                "closeSocket",
                "close a socket, wherever it is",
                _ok("204", "closed", None),
                errors=SOCKET_ERRORS,
                params=(UUID_PARAM,),
            ),
        },
        "/v1/sockets/{uuid}/send": {
            "post": _operation(
                "sendToSocket",
                "write a payload to a socket, wherever it is",
                _ok("200", "written (or handed to the owner node)", _schema("Ok")),
                errors=SOCKET_ERRORS,
                params=(UUID_PARAM,),
                body="Payload",
            )
        },
        "/v1/sockets/{uuid}/pause": {
            "post": _operation(
                "pauseSocket",
                "stop reading a socket; a paused socket is not active",
                _ok("200", "paused", _schema("Ok")),
                errors=SOCKET_ERRORS,
                params=(UUID_PARAM,),
            )
        },
        "/v1/sockets/{uuid}/resume": {
            "post": _operation(
                "resumeSocket",
                "read a paused socket again",
                _ok("200", "resumed", _schema("Ok")),
                errors=SOCKET_ERRORS,
                params=(UUID_PARAM,),
            )
        },
        "/v1/sockets/{uuid}/labels": {
            "put": _operation(
                "setSocketLabels",
                "replace a socket's labels",
                _ok("200", "replaced", _schema("Ok")),
                errors=SOCKET_ERRORS,
                params=(UUID_PARAM,),
                body="Labels",
            )
        },
        "/v1/broadcast": {
            "post": _operation(
                "broadcast",
                "write a payload to every matching socket fleet-wide",
                _ok("200", "how many sockets this node wrote", _schema("BroadcastResult")),
                errors=("503",),
                body="Broadcast",
            )
        },
        "/v1/upstreams": {
            "get": _operation(
                "listUpstreams",
                "the fleet's upstreams, with each node's view of ready/live",
                _ok("200", "the upstreams; cursor is always null", _schema("UpstreamList")),
                errors=("503",),
            ),
            "post": _operation(
                "addUpstream",
                "register an upstream; every node connects to it",
                _ok("201", "the registered upstream", _schema("Upstream")),
                errors=("409", "503"),
                body="UpstreamCreate",
            ),
        },
        "/v1/upstreams/{id}": {
            "delete": _operation(
                "removeUpstream",
                "remove an upstream fleet-wide; in-flight traffic finishes first",
                _ok("204", "removed", None),
                errors=("404", "503"),
                params=(UPSTREAM_PARAM,),
            )
        },
        "/v1/upstreams/{id}/drain": {
            "post": _operation(
                "drainUpstream",
                "no new traffic to an upstream; existing streams finish",
                _ok("200", "the upstream, now draining", _schema("Upstream")),
                errors=("404", "503"),
                params=(UPSTREAM_PARAM,),
            )
        },
        "/livez": {
            "get": _operation(
                "livez",
                "the process is up (no token needed)",
                _ok("200", "alive", _schema("Live")),
                open_probe=True,
            )
        },
        "/readyz": {
            "get": _operation(
                "readyz",
                "listening, not draining, and an upstream in rotation (no token needed); "
                "Redis down keeps a node ready, with fleet: degraded in the body",
                {
                    **_ok("200", "ready", _schema("Ready")),
                    **_ok("503", "not ready", _schema("Ready")),
                },
                open_probe=True,
            )
        },
        "/metrics": {
            "get": _operation(
                "metrics",
                "Prometheus text format, names prefixed paradoxplex_",
                {"200": {"description": "metrics", "content": {"text/plain": {}}}},
            )
        },
        "/openapi.json": {
            "get": _operation(
                "openapi",
                "this document",
                _ok("200", "the OpenAPI 3.1 document", {"type": "object"}),
            )
        },
        **_ui_paths(),
    }


def _ui_paths() -> Schema:
    """The dashboard: static files, no token (the page asks for it and sends it as Bearer)."""
    page = {"200": {"description": "the page", "content": {"text/html": {}}}}
    moved = {"308": {"description": "to /ui/ (Location: ui/)"}}
    files = {
        "200": {
            "description": "the file; every answer has a strict Content-Security-Policy, "
            "Cache-Control: no-cache and an ETag (304 when If-None-Match matches)",
            "content": {kind: {} for kind in ("text/css", "text/javascript", "image/svg+xml")},
        },
        "404": _ref("responses", "NotFound"),
    }
    name = {**NODE_PARAM, "name": "name", "description": "app.js, app.css, icon.svg, index.html"}
    return {
        "/ui": {"get": _operation("uiRedirect", "to the dashboard", moved, open_probe=True)},
        "/ui/": {
            "get": _operation(
                "ui",
                "the live fleet dashboard; it acts only through the routes above",
                page,
                open_probe=True,
            )
        },
        "/ui/{name}": {
            "get": _operation(
                "uiFile", "one of the dashboard's files", files, params=(name,), open_probe=True
            )
        },
    }


def _list_of(item: str) -> Schema:
    return {
        "type": "object",
        "required": ["items", "cursor"],
        "properties": {
            "items": {"type": "array", "items": _schema(item)},
            "cursor": {"type": ["string", "null"], "description": "opaque; null: last page"},
        },
    }


def _socket_list() -> Schema:
    page = _list_of("Socket")
    page["required"] = [*page["required"], "partial"]
    page["properties"]["partial"] = {
        "type": "boolean",
        "description": "true when the fleet state (Redis) could not be read: the page holds "
        "only the sockets of the node that answered",
    }
    return page


def _one_key(key: str, schema: Schema) -> Schema:
    return {
        "type": "object",
        "required": [key],
        "properties": {key: schema},
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
LABEL_MAP: Schema = {
    "type": "object",
    "maxProperties": MAX_LABELS,
    "propertyNames": {"pattern": f"^{LABEL_KEY_CHARS}+$", "maxLength": MAX_LABEL_LENGTH},
    "additionalProperties": {"type": "string", "maxLength": MAX_LABEL_LENGTH},
}


def _schemas() -> Schema:
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
                    "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                }
            },
        },
        "Ok": {"type": "object", "properties": {"ok": {"const": True}}},
        "Payload": {"oneOf": [_one_key("text", TEXT), _one_key("base64", BASE64)]},
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
                "listen": {"type": "string"},
                "admin_url": {"type": "string"},
                "started_at": number,
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
            },
        },
        "NodeList": _list_of("Node"),
        "Socket": {
            "type": "object",
            "properties": {
                "uuid": {"type": "string", "format": "uuid"},
                "node": {"type": "string"},
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
        "SocketList": _socket_list(),
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
                    "additionalProperties": _schema("UpstreamView"),
                },
            },
        },
        "UpstreamList": _list_of("Upstream"),
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
        "Live": {"type": "object", "properties": {"status": {"const": "ok"}}},
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


def _responses() -> Schema:
    return {
        name: {"description": description, **_json(_schema("Error"))}
        for name, description in ERROR_RESPONSES.values()
    }


def document(*, secured: bool = True) -> dict[str, Any]:
    """The whole OpenAPI 3.1 document (a fresh dict on every call); ``secured``: the node
    has a token."""
    whole = _document()
    if not secured:
        del whole["security"]
        del whole["components"]["securitySchemes"]
        for item in whole["paths"].values():
            for operation in item.values():
                operation.pop("security", None)
                operation["responses"].pop("401", None)
    return whole


def _document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "paradoxplex admin API",
            "version": VERSION,
            "description": "Every node answers for the whole fleet.",
        },
        "paths": _paths(),
        "components": {
            "schemas": _schemas(),
            "responses": _responses(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }
