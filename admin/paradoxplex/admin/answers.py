"""How the admin API answers: JSON bodies and the one error shape, for the app and the server.

Rules:
- Bodies are JSON (orjson).
- Errors are ``{"error": {"code", "message"}}``, including the router's 404 / 405; anything
  unexpected is a 500 logged with ``exc_info`` on ``paradoxplex.admin``, and the caller learns
  only that it happened.
- A 401 carries ``WWW-Authenticate: Bearer``; a 405 carries ``Allow``.
- A 503 or 504 says its ``outcome``; for a request that acts on nothing (a GET) it is always
  ``not_applied``.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from aiohttp import web

from paradoxplex.admin.errors import (
    INTERNAL_MESSAGE,
    ApiError,
    code_for_status,
    error_body,
    to_api_error,
)
from paradoxplex.shared.errors import Outcome
from paradoxplex.shared.logs import one_line

log = logging.getLogger("paradoxplex.admin")

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


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


def http_error(request: web.Request, error: web.HTTPException) -> tuple[ApiError, dict[str, str]]:
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


def unexpected(request: web.BaseRequest, error: BaseException | None) -> ApiError:
    """Log an error no table entry expects; the caller learns only that it happened."""
    log.error("admin %s %s failed", request.method, one_line(request.path), exc_info=error)
    return ApiError(500, "internal", INTERNAL_MESSAGE)


def answer(request: web.Request, error: Exception) -> web.Response:
    """Turn an exception out of a handler into the API's error answer."""
    if isinstance(error, web.HTTPException):
        api_error, headers = http_error(request, error)
        response = error_response(api_error)
        response.headers.update(headers)
        return response
    answer = to_api_error(error) or unexpected(request, error)
    if request.method in SAFE_METHODS:  # it asked for no action: none can have happened
        answer.outcome = Outcome.NOT_APPLIED
    return error_response(answer)
