"""The admin HTTP API: an aiohttp app in front of a ``Control`` (the node, acting fleet-wide).

Rules:
- Handlers only parse (``inputs``), call ``Control`` and answer; every decision about input
  lives in ``inputs``, every decision about error answers in ``errors``.
- Bodies are JSON (orjson), at most ``max_body`` bytes (default 2 MiB, else 413).
- Errors are ``{"error": {"code", "message"}}``, including the router's 404 / 405; anything
  unexpected is a 500 logged with ``exc_info`` on ``paradoxplex.admin``.
- Routes come from one table, ``routes.ROUTES``, which the OpenAPI document is built from too.
- With a token, every route but the table's public ones (``/livez``, ``/readyz``, the
  dashboard and its files) and ``/metrics`` with ``metrics_public`` needs ``Authorization:
  Bearer``; the comparison is constant-time and the token is never logged.
- Actions answer 200 ``{"ok": true}``; DELETE answers 204; POST /v1/upstreams answers 201.
- Every action (the table's rows with ``keyed``) takes an ``Idempotency-Key`` header: the
  handler hands ``Control`` the key and the fingerprint of what the request asks (its
  operation, path parameters and parsed body); an answer that replays the first call's, a
  success or an error, carries ``Idempotent-Replayed: true``. A 503 or 504 says its
  ``outcome``; for a request that acts on nothing (a GET) it is always ``not_applied``.
- One DEBUG line per request (method, path, status); mount with ``access_log=None`` to keep
  aiohttp's own access log quiet.
- Serve it with ``AdminServer``: a request aiohttp cannot parse (a 10 kB URL, a NUL in a
  header, not HTTP) never reaches the app; the runner answers it in the same error shape
  (400 ``bad_request``) with one WARNING line, where aiohttp would answer plain text and log
  an ERROR with a traceback.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from ssl import SSLContext
from typing import Any

import orjson
from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware
from aiohttp.web_protocol import RequestHandler

from paradoxplex.admin import inputs, openapi, routes, ui
from paradoxplex.admin.control import Control
from paradoxplex.admin.errors import (
    INTERNAL_MESSAGE,
    ApiError,
    code_for_status,
    error_body,
    to_api_error,
)
from paradoxplex.shared import idempotency
from paradoxplex.shared.errors import FleetUnavailable, Outcome
from paradoxplex.shared.idempotency import Once
from paradoxplex.shared.logs import one_line

log = logging.getLogger("paradoxplex.admin")

DEFAULT_MAX_BODY = 2 * 1024 * 1024
# the public routes of the table; a dashboard file is public by name (``ui.OPEN_PATHS``)
OPEN_PATHS = frozenset(
    route.path for route in routes.ROUTES if route.public and "{" not in route.path
)
Route = tuple[str, str, Handler]
ONCE = web.RequestKey("once", Once)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def build_app(
    control: Control,
    *,
    token: str | None,
    max_body: int = DEFAULT_MAX_BODY,
    metrics_public: bool = False,
) -> web.Application:
    """The admin app for ``control``; ``token`` None means no authentication (loopback only);
    ``metrics_public`` lets ``/metrics`` be scraped without the token, as the probes."""
    if token == "":
        raise ValueError("token must be None or a non-empty string")
    middlewares: list[Middleware] = [_answer_errors]
    if token is not None:
        open_paths = OPEN_PATHS | {"/metrics"} if metrics_public else OPEN_PATHS
        middlewares.append(_require_token(token, open_paths))
    app = web.Application(middlewares=middlewares, client_max_size=max_body)
    handlers = AdminHandlers(control, max_body=max_body, secured=token is not None)
    for method, path, handler in handlers.routes() + ui.Dashboard().routes():
        app.router.add_route(method, path, handler)
    return app


def bearer_matches(header: str | None, token: bytes) -> bool:
    """Whether an ``Authorization`` header carries ``Bearer <token>`` (constant-time)."""
    scheme, _, value = (header or "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(value.strip().encode("utf-8", "surrogateescape"), token)


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """A JSON answer encoded with orjson."""
    return web.Response(
        body=orjson.dumps(data), status=status, headers=headers, content_type="application/json"
    )


def error_response(error: ApiError) -> web.Response:
    """The error shape; a 401 also carries ``WWW-Authenticate: Bearer``."""
    headers: dict[str, str] | None = None
    if error.status == 401:
        headers = {"WWW-Authenticate": "Bearer"}
    body = error_body(error.code, error.message, status=error.status, outcome=error.outcome)
    return json_response(body, error.status, headers)


def _http_error(request: web.Request, error: web.HTTPException) -> tuple[ApiError, dict[str, str]]:
    """The router's and body reader's own errors, in the API's shape."""
    headers: dict[str, str] = {}
    if isinstance(error, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(error.allowed_methods))
        headers["Allow"] = allowed
        message = f"{request.method} is not allowed on {request.path}; allowed: {allowed}"
    elif isinstance(error, web.HTTPNotFound):
        message = f"no route {request.method} {request.path}"
    elif isinstance(error, web.HTTPRequestEntityTooLarge):
        message = "the body is over the size limit"
    else:
        message = error.reason
    return ApiError(error.status, code_for_status(error.status), message), headers


def _unexpected(request: web.BaseRequest, error: BaseException | None) -> ApiError:
    """Log an error no table entry expects; the caller learns only that it happened."""
    log.error("admin %s %s failed", request.method, one_line(request.path), exc_info=error)
    return ApiError(500, "internal", INTERNAL_MESSAGE)


def _answer(request: web.Request, error: Exception) -> web.Response:
    """Turn an exception out of a handler into the API's error answer."""
    if isinstance(error, web.HTTPException):
        api_error, headers = _http_error(request, error)
        response = error_response(api_error)
        response.headers.update(headers)
        return response
    answer = to_api_error(error) or _unexpected(request, error)
    if request.method in SAFE_METHODS:  # it asked for no action: none can have happened
        answer.outcome = Outcome.NOT_APPLIED
    return error_response(answer)


@web.middleware
async def _answer_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost: every error becomes a JSON answer; one DEBUG line per request."""
    try:
        response = await handler(request)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        response = _answer(request, error)
    except Exception as error:
        response = _answer(request, error)
    once = request.get(ONCE)
    if once is not None and once.replayed:
        response.headers[idempotency.REPLAYED_HEADER] = "true"
    log.debug("%s %s %d", request.method, one_line(request.path), response.status)
    return response


class _AdminRequestHandler(RequestHandler):
    """aiohttp's connection handler, answering what never reaches the app in the API's shape.

    aiohttp has no hook for the answer to a request its parser refused (aio-libs/aiohttp#3287):
    ``handle_error`` is the one place such a request meets code, so it is overridden here.
    """

    __slots__ = ()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        error = to_api_error(exc) if exc is not None else None
        if error is None and status >= 500:
            error = _unexpected(request, exc)
        elif error is None:
            error = ApiError(status, code_for_status(status), "bad request")
        if error.status < 500:
            log.warning(
                "admin: refused a malformed request from %s: %s (%s)",
                request.remote,
                error.message,
                type(exc).__name__,
            )
        if request.writer.output_size > 0:  # an answer has begun: only closing is left
            raise ConnectionError("cannot answer an error after a response has started")
        response = error_response(error)
        response.force_close()
        return response


class AdminServer:
    """Serves the admin app on one address; malformed HTTP is answered in the API's error shape
    with one log line (see ``_AdminRequestHandler``).

    Public aiohttp API only: ``web.AppRunner`` runs the app (setup, shutdown, cleanup) and its
    ``server`` property is the low-level server that ties a connection to the app; each
    connection's protocol is our ``RequestHandler`` subclass, made by the factory given to
    ``loop.create_server`` (aiohttp's ``TCPSite`` would make aiohttp's own).
    """

    __slots__ = ("_handler_options", "_listening", "_runner")

    def __init__(self, app: web.Application) -> None:
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        self._handler_options: dict[str, Any] = {"access_log": None}
        self._listening: asyncio.Server | None = None

    def __repr__(self) -> str:
        return f"<AdminServer address={self.address}>"

    @property
    def address(self) -> tuple[str, int] | None:
        """(host, port) actually bound (the port when asked for 0), or None before start."""
        if self._listening is None or not self._listening.sockets:
            return None
        host, port = self._listening.sockets[0].getsockname()[:2]
        return host, port

    async def start(
        self,
        host: str,
        port: int,
        ssl: SSLContext | None = None,
        *,
        sock: socket.socket | None = None,
    ) -> tuple[str, int]:
        """Set the app up and listen (on ``sock`` when given: an inherited listening socket,
        a hot handoff's); the (host, port) bound. OSError when the address is taken."""
        if self._runner.server is None:
            await self._runner.setup()
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert server is not None  # set by setup()

        def connection() -> RequestHandler:
            return _AdminRequestHandler(server, loop=loop, **self._handler_options)

        if sock is not None:
            self._listening = await loop.create_server(connection, sock=sock, ssl=ssl)
        else:
            self._listening = await loop.create_server(
                connection, host, port, ssl=ssl, reuse_address=True
            )
        address = self.address
        assert address is not None
        return address

    def listening_socket(self) -> socket.socket | None:
        """A duplicate of the listening socket (the caller closes it), or None."""
        if self._listening is None or not self._listening.sockets:
            return None
        return socket.socket(fileno=os.dup(self._listening.sockets[0].fileno()))

    async def pause(self, *, grace: float) -> None:
        """Stop listening and end every connection once its request in flight is answered
        (at most ``grace`` seconds); ``start(sock=...)`` listens again."""
        if self._listening is not None:
            self._listening.close()
            self._listening = None
        server = self._runner.server
        if server is not None:
            await server.shutdown(grace)

    async def close(self) -> None:
        """Stop listening, end open connections (after the requests in flight), clean up."""
        if self._listening is not None:
            self._listening.close()
        await self._runner.cleanup()
        if self._listening is not None:
            await self._listening.wait_closed()
            self._listening = None


def _require_token(token: str, open_paths: frozenset[str] = OPEN_PATHS) -> Middleware:
    expected = token.encode("utf-8")
    open_paths = open_paths | ui.OPEN_PATHS

    @web.middleware
    async def require_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path not in open_paths and not bearer_matches(
            request.headers.get(hdrs.AUTHORIZATION), expected
        ):
            raise ApiError(401, "unauthorized", "missing or bad bearer token")
        return await handler(request)

    return require_token


class AdminHandlers:
    """One method per route; each parses with ``inputs``, calls ``Control`` and answers."""

    def __init__(
        self, control: Control, *, max_body: int = DEFAULT_MAX_BODY, secured: bool = True
    ) -> None:
        self.control = control
        self.max_body = max_body
        self._openapi = orjson.dumps(openapi.document(secured=secured))

    def __repr__(self) -> str:
        return f"<AdminHandlers node={self.control.node_id} max_body={self.max_body}>"

    def routes(self) -> list[Route]:
        """(method, router path, handler) for every row of ``routes.API``."""
        return [(row.method, row.router_path, getattr(self, row.handler)) for row in routes.API]

    async def read_json(self, request: web.Request) -> Any:
        """The request's JSON body: JSON content type (or none), at most ``max_body`` bytes."""
        inputs.check_content_type(request.headers.get(hdrs.CONTENT_TYPE))
        if (request.content_length or 0) > self.max_body:
            raise ApiError(413, "payload_too_large", f"the body is over {self.max_body} bytes")
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise ApiError(
                413, "payload_too_large", f"the body is over {self.max_body} bytes"
            ) from None
        return inputs.parse_json(raw)

    @staticmethod
    def once(request: web.Request, operation: str, *parts: idempotency.Part) -> Once | None:
        """The request's ``Idempotency-Key`` with the fingerprint of what it asks (None
        without a key); kept on the request for the answer's ``Idempotent-Replayed``."""
        key = idempotency.parse_key(request.headers.get(idempotency.HEADER))
        if key is None:
            return None
        once = request[ONCE] = Once(key, idempotency.fingerprint(operation, *parts))
        return once

    async def list_nodes(self, request: web.Request) -> web.Response:
        return json_response({"items": await self.control.list_nodes(), "cursor": None})

    async def drain_node(self, request: web.Request) -> web.Response:
        node_id = request.match_info["id"]
        once = self.once(request, "drain_node", node_id)
        return json_response(await self.control.drain_node(node_id, once=once))

    async def list_sockets(self, request: web.Request) -> web.Response:
        query = inputs.parse_socket_query(request.query.items())
        page = await self.control.list_sockets(
            node=query.node,
            state=query.state,
            label=query.label,
            limit=query.limit,
            cursor=query.cursor,
        )
        return json_response({"items": page.items, "cursor": page.cursor, "partial": page.partial})

    async def get_socket(self, request: web.Request) -> web.Response:
        client_uuid = inputs.parse_uuid(request.match_info["uuid"])
        return json_response(await self.control.get_socket(client_uuid))

    async def close_socket(self, request: web.Request) -> web.Response:
        client_uuid = inputs.parse_uuid(request.match_info["uuid"])
        await self.control.close(client_uuid, once=self.once(request, "close", client_uuid))
        return web.Response(status=204)

    async def send_to_socket(self, request: web.Request) -> web.Response:
        client_uuid = inputs.parse_uuid(request.match_info["uuid"])
        payload = inputs.parse_payload(await self.read_json(request))
        once = self.once(request, "send", client_uuid, payload)
        await self.control.send(client_uuid, payload, once=once)
        return json_response({"ok": True})

    async def pause_socket(self, request: web.Request) -> web.Response:
        return await self._act(request, "pause", self.control.pause)

    async def resume_socket(self, request: web.Request) -> web.Response:
        return await self._act(request, "resume", self.control.resume)

    async def _act(
        self, request: web.Request, operation: str, act: Callable[..., Awaitable[None]]
    ) -> web.Response:
        """A bodiless action on one socket (pause, resume)."""
        client_uuid = inputs.parse_uuid(request.match_info["uuid"])
        await act(client_uuid, once=self.once(request, operation, client_uuid))
        return json_response({"ok": True})

    async def set_socket_labels(self, request: web.Request) -> web.Response:
        client_uuid = inputs.parse_uuid(request.match_info["uuid"])
        labels = inputs.parse_labels(await self.read_json(request))
        once = self.once(request, "labels", client_uuid, labels)
        await self.control.set_labels(client_uuid, labels, once=once)
        return json_response({"ok": True})

    async def broadcast(self, request: web.Request) -> web.Response:
        wanted = inputs.parse_broadcast(await self.read_json(request))
        label = "=".join(wanted.label) if wanted.label else None
        once = self.once(request, "broadcast", wanted.target.value, label, wanted.payload)
        delivered = await self.control.broadcast(
            wanted.target, wanted.label, wanted.payload, once=once
        )
        return json_response({"delivered_local": delivered})

    async def list_upstreams(self, request: web.Request) -> web.Response:
        return json_response({"items": await self.control.list_upstreams(), "cursor": None})

    async def add_upstream(self, request: web.Request) -> web.Response:
        spec = inputs.parse_upstream(await self.read_json(request))
        once = self.once(request, "add_upstream", orjson.dumps(spec.to_dict()))
        return json_response(await self.control.add_upstream(spec, once=once), status=201)

    async def remove_upstream(self, request: web.Request) -> web.Response:
        upstream_id = request.match_info["id"]
        once = self.once(request, "remove_upstream", upstream_id)
        await self.control.remove_upstream(upstream_id, once=once)
        return web.Response(status=204)

    async def drain_upstream(self, request: web.Request) -> web.Response:
        upstream_id = request.match_info["id"]
        once = self.once(request, "drain_upstream", upstream_id)
        return json_response(await self.control.drain_upstream(upstream_id, once=once))

    async def livez(self, request: web.Request) -> web.Response:
        """Up, and who: a node starting with the same id asks this (``fleet.claim``)."""
        who = {"node": self.control.node_id, "incarnation": self.control.incarnation}
        if self.control.live():
            return json_response({"status": "ok", **who})
        return json_response({"status": "down", **who}, status=503)

    async def readyz(self, request: web.Request) -> web.Response:
        try:
            ready, detail = await self.control.ready()
        except FleetUnavailable as error:
            ready, detail = False, {"fleet": error.reason}
        body = {"ready": ready} | {key: value for key, value in detail.items() if key != "ready"}
        return json_response(body, status=200 if ready else 503)

    async def metrics(self, request: web.Request) -> web.Response:
        body, content_type = self.control.metrics()
        return web.Response(body=body, headers={hdrs.CONTENT_TYPE: content_type})

    async def openapi(self, request: web.Request) -> web.Response:
        return web.Response(body=self._openapi, content_type="application/json")
