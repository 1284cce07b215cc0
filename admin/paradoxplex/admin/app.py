"""The admin HTTP API: an aiohttp app in front of a ``Control`` (the node, acting fleet-wide).

Rules:
- The handlers (``handlers``) parse, call ``Control`` and answer; this module assembles them
  with the dashboard's and the middlewares. Every error out of a handler or the router
  becomes the one error shape (``answers``).
- Routes come from one table, ``routes.ROUTES``, which the OpenAPI document is built from too.
- With a token, every route but the table's public ones (``/livez``, ``/readyz``, the
  dashboard and its files) and ``/metrics`` with ``metrics_public`` needs ``Authorization:
  Bearer``; the comparison is constant-time and the token is never logged.
- An answer that replays the first call with its ``Idempotency-Key``, a success or an
  error, carries ``Idempotent-Replayed: true``.
- One DEBUG line per request (method, path, status); mount with ``access_log=None`` to keep
  aiohttp's own access log quiet.
- Serve it with ``server.AdminServer``, which answers malformed HTTP in the same shape.
"""

from __future__ import annotations

import hmac
import logging

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware

from paradoxplex.admin import routes, ui
from paradoxplex.admin.answers import answer
from paradoxplex.admin.control import Control
from paradoxplex.admin.errors import ApiError
from paradoxplex.admin.handlers import DEFAULT_MAX_BODY, ONCE, AdminHandlers
from paradoxplex.shared import idempotency
from paradoxplex.shared.logs import one_line

log = logging.getLogger("paradoxplex.admin")

# the public routes of the table; a dashboard file is public by name (``ui.OPEN_PATHS``)
OPEN_PATHS = frozenset(
    route.path for route in routes.ROUTES if route.public and "{" not in route.path
)


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


@web.middleware
async def _answer_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost: every error becomes a JSON answer; one DEBUG line per request."""
    try:
        response = await handler(request)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        response = answer(request, error)
    except Exception as error:
        response = answer(request, error)
    once = request.get(ONCE)
    if once is not None and once.replayed:
        response.headers[idempotency.REPLAYED_HEADER] = "true"
    log.debug("%s %s %d", request.method, one_line(request.path), response.status)
    return response


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
