"""The one table from exceptions to error answers."""

from __future__ import annotations

import pytest
from aiohttp import http_exceptions

from paradoxplex.admin.errors import (
    STATUSES,
    ApiError,
    code_for_status,
    error_body,
    to_api_error,
)
from paradoxplex.shared.errors import (
    ConfigError,
    Conflict,
    FleetError,
    FleetUnavailable,
    FrameTooLarge,
    InvalidRequest,
    OwnerTimeout,
    ParadoxplexError,
    UnknownSession,
    UnknownUpstream,
    Unlocated,
)


@pytest.mark.parametrize(
    ("error", "status", "code", "says"),
    [
        (InvalidRequest("port", "must be a number"), 400, "bad_request", "port: must be a number"),
        (InvalidRequest("cursor", "not a cursor"), 400, "bad_request", "cursor: not a cursor"),
        (UnknownSession("s-1"), 404, "not_found", "s-1"),
        (UnknownUpstream("h:1"), 404, "not_found", "h:1"),
        (Conflict("upstream h:1 exists"), 409, "conflict", "h:1"),
        (OwnerTimeout("s-1", "node-b"), 504, "owner_timeout", "node-b"),
        (FleetUnavailable("redis down"), 503, "fleet_unavailable", "redis down"),
        (Unlocated("s-1", "node-b, node-c"), 504, "owner_timeout", "node-b, node-c"),
    ],
)
def test_paradoxplex_errors_map_to_statuses(
    error: Exception, status: int, code: str, says: str
) -> None:
    answer = to_api_error(error)
    assert answer is not None
    assert (answer.status, answer.code) == (status, code)
    assert says in answer.message


def test_a_subclass_takes_its_ancestors_entry() -> None:
    class SlowOwner(OwnerTimeout):
        pass

    answer = to_api_error(SlowOwner("s", "n"))
    assert answer is not None
    assert answer.code == "owner_timeout"


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("boom"),
        KeyError("k"),
        FrameTooLarge(10, 5),
        FleetError(),
        ParadoxplexError(),
        ConfigError("redis", "a setting is never the caller's fault"),
    ],
)
def test_unlisted_errors_are_unexpected(error: Exception) -> None:
    assert to_api_error(error) is None


def test_an_api_error_is_its_own_answer() -> None:
    error = ApiError(413, "payload_too_large", "too big")
    assert to_api_error(error) is error


def test_every_listed_status_is_an_error_status() -> None:
    assert all(400 <= status < 600 for status, _ in STATUSES.values())


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (404, "not_found"),
        (405, "method_not_allowed"),
        (413, "payload_too_large"),
        (418, "bad_request"),
        (500, "internal"),
        (502, "internal"),
    ],
)
def test_codes_for_bare_statuses(status: int, code: str) -> None:
    assert code_for_status(status) == code


def test_the_error_shape() -> None:
    assert error_body("conflict", "no") == {"error": {"code": "conflict", "message": "no"}}


@pytest.mark.parametrize(
    ("error", "says"),
    [
        (http_exceptions.LineTooLong(b"GET /secret-path", 8190, "10000"), "too long"),
        (http_exceptions.InvalidHeader(b"X-Id: a\x00b"), "malformed header"),
        (http_exceptions.BadHttpMethod("G\x01T"), "bad method"),
        (http_exceptions.TransferEncodingError("bad chunk zz"), "transfer encoding"),
        (http_exceptions.BadHttpMessage("anything"), "malformed HTTP request"),
    ],
)
def test_malformed_http_is_400_in_words_of_our_own(error: Exception, says: str) -> None:
    answer = to_api_error(error)
    assert answer is not None
    assert (answer.status, answer.code) == (400, "bad_request")
    assert says in answer.message
    assert "secret" not in answer.message
    assert "\x00" not in answer.message
