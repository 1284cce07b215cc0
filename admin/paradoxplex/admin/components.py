"""The named schemas of the admin API's OpenAPI document (``components.schemas``), by resource.

Rules:
- One function per resource (nodes, sockets, upstreams, the probes) plus the answers every
  route shares and the bodies the socket actions send; ``schemas()`` joins them in the
  document's order.
- A request body that ``inputs`` refuses extra keys in (``Payload``, ``Broadcast``,
  ``UpstreamCreate``) says ``additionalProperties: false``.
- Patterns and bounds come from the code that enforces them (``inputs``,
  ``shared.sessions``, ``shared.upstreams``), as in ``schemas``.
- Every schema a route names (``routes``, by ``schemas.schema``) is here.
"""

from __future__ import annotations

from paradoxplex.admin.inputs import BASE64_PATTERN
from paradoxplex.admin.schemas import LABEL, OUTCOME, Schema, schema
from paradoxplex.shared.sessions import LABEL_KEY_CHARS, MAX_LABEL_LENGTH, MAX_LABELS
from paradoxplex.shared.upstreams import MAX_HOST_LENGTH

NUMBER: Schema = {"type": "number"}
COUNT: Schema = {"type": "integer", "minimum": 0}
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


def schemas() -> Schema:
    """Every named schema, by resource."""
    return _answers() | _writes() | _nodes() | _sockets() | _upstreams() | _probes()


def _answers() -> Schema:
    """The answers every route may give: the error shape, and an action's ``ok``."""
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
    }


def _writes() -> Schema:
    """What the actions on sockets send: payloads, labels, broadcasts."""
    return {
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
            "properties": {"delivered_local": COUNT},
        },
    }


def _nodes() -> Schema:
    """The fleet's nodes as ``GET /v1/nodes`` lists them."""
    return {
        "Node": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "incarnation": INCARNATION,
                "listen": {"type": "string"},
                "admin_url": {"type": "string"},
                "started_at": {**NUMBER, "description": "when this incarnation started (epoch s)"},
                "sockets": COUNT,
                "state": {
                    "enum": ["starting", "up", "draining", "degraded"],
                    "description": (
                        "starting: its bus does not listen yet; draining: accepts no new "
                        "sockets; degraded: lost Redis"
                    ),
                },
                "messages_in": {**COUNT, "description": "frames read from its sockets, ever"},
                "messages_out": {**COUNT, "description": "messages written to its sockets"},
                "drops": {**COUNT, "description": "sum of paradoxplex_drops, every reason"},
                "heartbeat_at": {
                    **NUMBER,
                    "description": "the node's clock (epoch s) when it wrote this record; "
                    "counters are as of then: diff two records for rates",
                },
                "last_handoff": {
                    "type": "object",
                    "description": "the hot handoff that made this process the node (absent "
                    "when it started plainly): when, from which process, sockets moved and "
                    "kept by the old process, the pause its sockets saw",
                    "properties": {
                        "at": NUMBER,
                        "from_pid": COUNT,
                        "moved": COUNT,
                        "kept": COUNT,
                        "pause_ms": NUMBER,
                    },
                },
            },
        },
        "NodeList": list_of("Node"),
    }


def _sockets() -> Schema:
    """A socket record, and a page of them."""
    return {
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
                "connected_at": NUMBER,
                "state": {"enum": ["active", "paused"]},
                "labels": LABEL_MAP,
                "bytes_in": COUNT,
                "bytes_out": COUNT,
                "messages_in": COUNT,
                "messages_out": COUNT,
            },
        },
        "SocketList": socket_list(),
    }


def _upstreams() -> Schema:
    """An upstream to add, an upstream record and one node's view of it."""
    return {
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
                "ready_timeout": NUMBER,
                "alive_timeout": NUMBER,
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
                "since": {**NUMBER, "description": "epoch s of the last state change"},
                "queued": COUNT,
                "batch": {
                    "type": ["boolean", "null"],
                    "description": "the batch RPC is used (null: not probed yet)",
                },
                "error": {"type": ["string", "null"]},
                "sent": {**COUNT, "description": "messages sent to it by this node"},
                "received": {**COUNT, "description": "messages received from it"},
                "errors": {**COUNT, "description": "stream errors"},
                "rtt_ms": {"type": ["number", "null"], "description": "round-trip time"},
                "reason": {"type": ["string", "null"], "description": "why in this state"},
            },
        },
    }


def _probes() -> Schema:
    """``/livez`` and ``/readyz``."""
    return {
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
                "upstreams_ready": COUNT,
                "fleet": {
                    "type": "string",
                    "description": "ok, degraded (Redis unreachable: local traffic goes on), "
                    "or the reason the fleet state failed",
                },
            },
            "additionalProperties": True,
        },
    }


def error_with_outcome() -> Schema:
    """``Error`` whose ``error`` says ``outcome`` (the 503 and 504 answers)."""
    return {
        "allOf": [
            schema("Error"),
            {"properties": {"error": {"required": ["outcome"]}}},
        ]
    }
