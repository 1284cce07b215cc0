"""The OpenAPI document and the input parsers agree, value by value, where they once did not.

Each case is checked both ways: the document's schema (validated with formats, as
schemathesis does) and the parser must both accept or both refuse. The live check of every
route is tests/integration/test_admin_openapi_live.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jsonschema_rs
import pytest

from paradoxplex.admin import components, inputs, openapi, schemas
from paradoxplex.shared.errors import InvalidRequest
from paradoxplex.shared.upstreams import UpstreamSpec

Parse = Callable[[Any], object]


def query_value(name: str) -> Parse:
    return lambda value: inputs.parse_socket_query([(name, value)])


def upstream_field(name: str) -> Parse:
    return lambda value: UpstreamSpec.from_dict({"host": "up", "port": 1} | {name: value})


def query_schema(name: str) -> dict[str, Any]:
    [schema] = [param["schema"] for param in schemas.SOCKET_QUERY if param["name"] == name]
    return dict(schema)


CREATE = openapi.document()["components"]["schemas"]["UpstreamCreate"]["properties"]
FIELDS: dict[str, tuple[dict[str, Any], Parse]] = {
    "base64": (components.BASE64, lambda value: inputs.parse_payload({"base64": value})),
    "broadcast label": (
        schemas.LABEL,
        lambda value: inputs.parse_broadcast({"target": "all", "text": "x", "label": value}),
    ),
    "state": (query_schema("state"), query_value("state")),
    "label": (query_schema("label"), query_value("label")),
    "limit": (query_schema("limit"), query_value("limit")),
    "cursor": (query_schema("cursor"), query_value("cursor")),
    "host": (CREATE["host"], upstream_field("host")),
    "port": (CREATE["port"], upstream_field("port")),
    "tls": (CREATE["tls"], upstream_field("tls")),
    "server_name": (CREATE["server_name"], upstream_field("server_name")),
}

CASES = [
    ("base64", "0", False),
    ("base64", "00", False),
    ("base64", "000", False),
    ("base64", "0000", True),
    ("base64", "AA==", True),
    ("base64", "AAA=", True),
    ("base64", "A===", False),
    ("base64", "AA==AA==", False),
    ("base64", "AA AA", False),
    ("base64", "", False),
    ("broadcast label", "site=a", True),
    ("broadcast label", "novalue", False),
    ("broadcast label", "=v", False),
    ("broadcast label", "k=", True),
    ("broadcast label", "", True),
    ("label", "novalue", False),
    ("label", "a b=c", False),
    ("label", "k=v=w", True),
    ("label", "k=" + "v" * 128, True),
    ("label", "k=" + "v" * 129, False),
    ("label", "k" * 129 + "=v", False),
    ("label", "", True),
    ("state", "active", True),
    ("state", "paused", True),
    ("state", "", True),
    ("state", "ACTIVE", False),
    ("cursor", "0f8fad5b-d9cb-469f-a165-70867728950e", True),
    ("cursor", "zz", False),
    ("cursor", "0" * 37, False),
    ("host", "0", False),
    ("host", "1.2.3", False),
    ("host", "256.1.1.1", False),
    ("host", "127.0.0.1", True),
    ("host", "::1", True),
    ("host", "[::1]", False),
    ("host", "fe80::1%eth0", False),
    ("host", "a-1.example", True),
    ("host", "1-2", True),
    ("host", "a..b", False),
    ("host", "up.", False),
    ("host", "under_score", False),
    ("host", "127.0.0.1\n", False),
    ("host", "x" * 64, False),
    ("host", ".".join(["x" * 63] * 4), False),
    ("port", 6133.0, True),
    ("port", 6133.5, False),
    ("port", 0, False),
    ("port", 65536, False),
    ("tls", True, True),
    ("tls", False, True),
    ("tls", None, False),
    ("tls", "true", False),
    ("tls", 1, False),
    ("server_name", "echo.internal", True),
    ("server_name", "10.0.0.5", True),
    ("server_name", None, True),
    ("server_name", "", False),
    ("server_name", "a b", False),
    ("server_name", "up.", False),
    ("server_name", 5, False),
]


def parser_accepts(parse: Parse, value: Any) -> bool:
    try:
        parse(value)
    except InvalidRequest:
        return False
    return True


@pytest.mark.parametrize(("field", "value", "accepted"), CASES)
def test_the_document_and_the_parser_agree(field: str, value: Any, accepted: bool) -> None:
    schema, parse = FIELDS[field]
    validator = jsonschema_rs.validator_for(schema, validate_formats=True)
    assert validator.is_valid(value) is accepted, "the document"
    assert parser_accepts(parse, value) is accepted, "the parser"


@pytest.mark.parametrize(("value", "accepted"), [("5", True), ("0", False), ("x", False)])
def test_limit_as_the_integer_the_document_means(value: str, accepted: bool) -> None:
    schema, parse = FIELDS["limit"]
    validator = jsonschema_rs.validator_for(schema)
    assert validator.is_valid(int(value) if value.isdigit() else value) is accepted
    assert parser_accepts(parse, value) is accepted
