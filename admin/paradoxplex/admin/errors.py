"""How the admin API answers errors: one table from exception type to (status, code).

Rules:
- Every error answer is ``{"error": {"code": "...", "message": "..."}}``; a 503 or 504 also
  says what became of the action: ``"outcome": "not_applied"`` or ``"unknown"`` (the
  exception's ``outcome``; a request that asks for no action, a GET, is ``not_applied``).
- ``STATUSES`` maps paradoxplex exceptions to statuses; a subclass takes its nearest listed
  ancestor's entry. Anything not listed is a 500 ``internal`` whose message says nothing more.
- ``ApiError`` is what the HTTP layer itself raises (bad JSON, bad token, too large).
- ``MALFORMED`` maps aiohttp's HTTP parser errors (a 10 kB URL, a NUL in a header, a broken
  chunked body) to 400 ``bad_request`` with a message of our own: aiohttp's quotes the bytes.
- Messages are built from exception fields, never from payload bytes.
"""

from __future__ import annotations

from typing import Any

from aiohttp import http_exceptions as http

from paradoxplex.shared.errors import (
    ActionInProgress,
    Conflict,
    FleetError,
    FleetUnavailable,
    InvalidRequest,
    KeyReused,
    Outcome,
    OwnerTimeout,
    UnknownSession,
    UnknownUpstream,
    Unlocated,
)

STATUSES: dict[type[Exception], tuple[int, str]] = {
    InvalidRequest: (400, "bad_request"),
    UnknownSession: (404, "not_found"),
    UnknownUpstream: (404, "not_found"),
    ActionInProgress: (409, "in_progress"),
    Conflict: (409, "conflict"),
    KeyReused: (422, "idempotency_key_reused"),
    OwnerTimeout: (504, "owner_timeout"),
    Unlocated: (504, "owner_timeout"),
    FleetUnavailable: (503, "fleet_unavailable"),
}

MALFORMED: dict[type[Exception], str] = {
    http.LineTooLong: "the request line or a header is too long",
    http.BadHttpMethod: "not an HTTP request (bad method)",
    http.BadStatusLine: "malformed request line",
    http.InvalidURLError: "the request target is not a valid URL",
    http.InvalidHeader: "malformed header",
    http.PayloadEncodingError: "the body's transfer encoding is malformed",
    http.HttpProcessingError: "malformed HTTP request",
}

HTTP_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "bad_request",
    422: "idempotency_key_reused",
    500: "internal",
    503: "fleet_unavailable",
    504: "owner_timeout",
}

INTERNAL_MESSAGE = "internal error; the node's log has the details"


class ApiError(Exception):
    """An error answer decided by the HTTP layer: status, code and a message for the caller;
    ``outcome`` for a 503 or 504 (None: ``unknown``)."""

    def __init__(
        self, status: int, code: str, message: str, *, outcome: Outcome | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.outcome = outcome


def to_api_error(error: BaseException) -> ApiError | None:
    """The answer for ``error``, or None when it is not an expected error (→ 500)."""
    if isinstance(error, ApiError):
        return error
    for kind in type(error).__mro__:
        if kind in STATUSES:
            status, code = STATUSES[kind]
            outcome = error.outcome if isinstance(error, FleetError) else None
            return ApiError(status, code, str(error), outcome=outcome)
        if kind in MALFORMED:
            return ApiError(400, "bad_request", MALFORMED[kind])
    return None


def code_for_status(status: int) -> str:
    """The error code for a bare HTTP status (router 404/405, 413 from the body reader)."""
    return HTTP_CODES.get(status, "bad_request" if 400 <= status < 500 else "internal")


def error_body(
    code: str, message: str, *, status: int = 400, outcome: Outcome | None = None
) -> dict[str, Any]:
    """The one error shape of the admin API; a 503 or 504 says its outcome (see the rules)."""
    error: dict[str, Any] = {"code": code, "message": message}
    if status in OUTCOME_STATUSES:
        error["outcome"] = str(outcome or Outcome.UNKNOWN)
    return {"error": error}


#: The error answers that say what became of the action.
OUTCOME_STATUSES = frozenset({503, 504})
