"""The admin client's decisions that need no socket: bodies out, errors in."""

from __future__ import annotations

import pytest

from paradoxplex.admin.client import (
    AdminClient,
    AdminUnreachable,
    Page,
    error_from_answer,
    payload_body,
)


@pytest.mark.parametrize(
    ("payload", "body"),
    [("hé", {"text": "hé"}), (b"\x00\xff", {"base64": "AP8="}), (b"", {"base64": ""})],
)
def test_payload_bodies(payload: str | bytes, body: dict[str, str]) -> None:
    assert payload_body(payload) == body


def test_an_api_error_answer() -> None:
    error = error_from_answer(404, "Not Found", b'{"error":{"code":"not_found","message":"no x"}}')
    assert (error.status, error.code, error.message) == (404, "not_found", "no x")
    assert str(error) == "not_found: no x"


@pytest.mark.parametrize("body", [b"<html>bad gateway</html>", b"", b"[]", b'{"error": "x"}'])
def test_an_answer_without_the_api_shape(body: bytes) -> None:
    error = error_from_answer(502, "Bad Gateway", body)
    assert (error.status, error.code, error.message) == (502, "http_502", "Bad Gateway")


def test_unreachable_names_the_url() -> None:
    error = AdminUnreachable("http://h:1", "connection refused")
    assert str(error) == "cannot reach the admin API at http://h:1: connection refused"


def test_a_page() -> None:
    assert Page([{"a": 1}], None).to_dict() == {"items": [{"a": 1}], "cursor": None}


@pytest.mark.parametrize("url", ["127.0.0.1:8000", "/v1", ""])
def test_a_relative_url_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="absolute"):
        AdminClient(url)


def test_repr_hides_the_token() -> None:
    client = AdminClient("http://127.0.0.1:8000", token="secret")
    assert repr(client) == "<AdminClient http://127.0.0.1:8000 idle token=set>"
    assert "secret" not in f"{client!r} {client!s}"
    # it still tells whether there is one
    anonymous = AdminClient("http://127.0.0.1:8000")
    assert repr(anonymous) == "<AdminClient http://127.0.0.1:8000 idle token=none>"
