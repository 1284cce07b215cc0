"""Every route of the admin API in one table, ``ROUTES``: the app's router (``app.build_app``)
and the OpenAPI document's ``paths`` (``openapi.document``) are both built from it, so the
document cannot describe a route the app does not serve, nor miss one.

Rules:
- A row is a method, a path (the OpenAPI template), the name of the method that answers it
  (on ``handlers.AdminHandlers``; on ``ui.Dashboard`` for ``DASHBOARD``) and what the document
  says of it. The operation's id is that name in camelCase (``list_nodes``: ``listNodes``).
- ``public`` rows need no token: the probes and the dashboard's files. The token middleware
  and the document's ``security: []`` both read it.
- A row lists the errors particular to it; ``openapi`` adds the ones every operation can
  answer (401 when secured, 500, and 400 and 413 with a body).
- Every row whose method changes something (POST, PUT, DELETE) is ``keyed``: it takes an
  ``Idempotency-Key`` header, may answer 409 (in progress) and 422 (key reused), and its
  answers may carry ``Idempotent-Replayed``; ``openapi`` adds all that.
- A path parameter matches one path segment; a ``uuid`` also one with braces in it, so that
  a malformed uuid is the handler's 400, not the router's 404 (``PATTERNS``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from paradoxplex.admin.schemas import (
    FILE_PARAM,
    NODE_PARAM,
    SOCKET_QUERY,
    UPSTREAM_PARAM,
    UUID_PARAM,
    Schema,
    json_body,
    schema,
)

UI_PREFIX = "/ui/"
SOCKET = "/v1/sockets/{uuid}"
UPSTREAM = "/v1/upstreams/{id}"
PATTERNS = {"uuid": "[^/]+"}
SOCKET_ERRORS = ("400", "404", "503", "504")


def ok(status: str, description: str, body: str | Schema | None = None) -> Schema:
    """A success answer; ``body`` a schema, or the name of one in ``components``."""
    answer: Schema = {"description": description}
    if body is not None:
        answer.update(json_body(schema(body) if isinstance(body, str) else body))
    return {status: answer}


def content(status: str, description: str, *types: str) -> Schema:
    """A success answer of other types than JSON, their schema left open."""
    return {status: {"description": description, "content": {kind: {} for kind in types}}}


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: str
    summary: str
    answers: Schema
    errors: tuple[str, ...] = ()
    params: tuple[Schema, ...] = ()
    body: str | None = None
    public: bool = False

    @property
    def keyed(self) -> bool:
        """An action: it takes an ``Idempotency-Key`` (see the rules)."""
        return self.method in ("POST", "PUT", "DELETE")

    @property
    def operation_id(self) -> str:
        first, *rest = self.handler.split("_")
        return first + "".join(word.capitalize() for word in rest)

    @property
    def router_path(self) -> str:
        """The path as aiohttp's router takes it (``{uuid:[^/]+}``)."""

        def pattern(match: re.Match[str]) -> str:
            name = match[1]
            return f"{{{name}:{PATTERNS[name]}}}" if name in PATTERNS else match[0]

        return re.sub(r"{(\w+)}", pattern, self.path)


API: tuple[Route, ...] = (
    Route(
        "GET",
        "/v1/nodes",
        "list_nodes",
        "live nodes of the fleet",
        ok("200", "the nodes; cursor is always null", "NodeList"),
        errors=("503",),
    ),
    Route(
        "POST",
        "/v1/nodes/{id}/drain",
        "drain_node",
        "a node stops accepting sockets and drains",
        ok("200", "the node's record", "Node"),
        errors=("404", "409", "503", "504"),
        params=(NODE_PARAM,),
    ),
    Route(
        "GET",
        "/v1/sockets",
        "list_sockets",
        "sockets fleet-wide, one page at a time",
        ok("200", "one page; pass cursor back for the next", "SocketList"),
        errors=("400", "503"),
        params=SOCKET_QUERY,
    ),
    Route(
        "GET",
        SOCKET,
        "get_socket",
        "one socket: owner node, remote address, state, counters, labels",
        ok("200", "the socket", "Socket"),
        errors=SOCKET_ERRORS,
        params=(UUID_PARAM,),
    ),
    Route(
        "DELETE",
        SOCKET,
        "close_socket",
        "close a socket, wherever it is",
        ok("204", "closed"),
        errors=SOCKET_ERRORS,
        params=(UUID_PARAM,),
    ),
    Route(
        "POST",
        f"{SOCKET}/send",
        "send_to_socket",
        "write a payload to a socket, wherever it is",
        ok("200", "written (or handed to the owner node)", "Ok"),
        errors=SOCKET_ERRORS,
        params=(UUID_PARAM,),
        body="Payload",
    ),
    Route(
        "POST",
        f"{SOCKET}/pause",
        "pause_socket",
        "stop reading a socket; a paused socket is not active",
        ok("200", "paused", "Ok"),
        errors=SOCKET_ERRORS,
        params=(UUID_PARAM,),
    ),
    Route(
        "POST",
        f"{SOCKET}/resume",
        "resume_socket",
        "read a paused socket again",
        ok("200", "resumed", "Ok"),
        errors=SOCKET_ERRORS,
        params=(UUID_PARAM,),
    ),
    Route(
        "PUT",
        f"{SOCKET}/labels",
        "set_socket_labels",
        "replace a socket's labels",
        ok("200", "replaced", "Ok"),
        errors=SOCKET_ERRORS,
        params=(UUID_PARAM,),
        body="Labels",
    ),
    Route(
        "POST",
        "/v1/broadcast",
        "broadcast",
        "write a payload to every matching socket fleet-wide",
        ok("200", "how many sockets this node wrote", "BroadcastResult"),
        errors=("503",),
        body="Broadcast",
    ),
    Route(
        "GET",
        "/v1/upstreams",
        "list_upstreams",
        "the fleet's upstreams, with each node's view of ready/live",
        ok("200", "the upstreams; cursor is always null", "UpstreamList"),
        errors=("503",),
    ),
    Route(
        "POST",
        "/v1/upstreams",
        "add_upstream",
        "register an upstream; every node connects to it",
        ok("201", "the registered upstream", "Upstream"),
        errors=("409", "503"),
        body="UpstreamCreate",
    ),
    Route(
        "DELETE",
        UPSTREAM,
        "remove_upstream",
        "remove an upstream fleet-wide; in-flight traffic finishes first",
        ok("204", "removed"),
        errors=("404", "503"),
        params=(UPSTREAM_PARAM,),
    ),
    Route(
        "POST",
        f"{UPSTREAM}/drain",
        "drain_upstream",
        "no new traffic to an upstream; an SDK upstream finishes what it runs and hands back "
        "the rest, which is delivered again elsewhere; an original-proto one's streams finish",
        ok("200", "the upstream, now draining", "Upstream"),
        errors=("404", "503"),
        params=(UPSTREAM_PARAM,),
    ),
    Route(
        "GET",
        "/livez",
        "livez",
        "the process is up (no token needed)",
        ok("200", "alive", "Live"),
        public=True,
    ),
    Route(
        "GET",
        "/readyz",
        "readyz",
        "listening, not draining, and an upstream in rotation (no token needed); "
        "Redis down keeps a node ready, with fleet: degraded in the body",
        ok("200", "ready", "Ready") | ok("503", "not ready", "Ready"),
        public=True,
    ),
    Route(
        "GET",
        "/metrics",
        "metrics",
        "Prometheus text format, names prefixed paradoxplex_",
        content("200", "metrics", "text/plain"),
    ),
    Route(
        "GET",
        "/openapi.json",
        "openapi",
        "this document",
        ok("200", "the OpenAPI 3.1 document", {"type": "object"}),
    ),
)

# The dashboard: static files, no token (the page asks for it and sends it as Bearer).
DASHBOARD: tuple[Route, ...] = (
    Route(
        "GET",
        UI_PREFIX.rstrip("/"),
        "ui_redirect",
        "to the dashboard",
        {"308": {"description": "to /ui/ (Location: ui/)"}},
        public=True,
    ),
    Route(
        "GET",
        UI_PREFIX,
        "ui",
        "the live fleet dashboard; it acts only through the routes above",
        content("200", "the page", "text/html"),
        public=True,
    ),
    Route(
        "GET",
        UI_PREFIX + "{name}",
        "ui_file",
        "one of the dashboard's files",
        content(
            "200",
            "the file; every answer has a strict Content-Security-Policy, "
            "Cache-Control: no-cache and an ETag (304 when If-None-Match matches)",
            "text/css",
            "text/javascript",
            "image/svg+xml",
        ),
        errors=("404",),
        params=(FILE_PARAM,),
        public=True,
    ),
)

ROUTES = API + DASHBOARD
