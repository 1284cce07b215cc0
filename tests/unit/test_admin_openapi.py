"""The OpenAPI document: complete, self-consistent, and the same routes the app serves."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from paradoxplex.admin.openapi import document

DOC = document()
OPERATIONS = [
    (method, path, operation)
    for path, item in DOC["paths"].items()
    for method, operation in item.items()
]
PROBES = {"/livez", "/readyz", "/ui", "/ui/", "/ui/{name}"}  # no token needed


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def resolve(ref: str) -> Any:
    assert ref.startswith("#/")
    node: Any = DOC
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def test_the_version_and_security() -> None:
    assert DOC["openapi"] == "3.1.0"
    assert DOC["security"] == [{"bearer": []}]
    assert DOC["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}


@pytest.mark.parametrize("ref", sorted(set(refs(DOC))))
def test_every_ref_resolves(ref: str) -> None:
    assert resolve(ref)


def test_operation_ids_are_unique() -> None:
    ids = [operation["operationId"] for _, _, operation in OPERATIONS]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize(("method", "path", "operation"), OPERATIONS)
def test_each_operation(method: str, path: str, operation: dict[str, Any]) -> None:
    responses = operation["responses"]
    assert "500" in responses
    declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
    assert declared == set(re.findall(r"{(\w+)}", path))
    if path in PROBES:
        assert operation["security"] == []
        assert "401" not in responses
    else:
        assert "security" not in operation
        assert "401" in responses
    if "requestBody" in operation:
        assert {"400", "413"} <= set(responses)


def test_errors_share_one_shape() -> None:
    error = {"$ref": "#/components/schemas/Error"}
    with_outcome = {"$ref": "#/components/schemas/ErrorWithOutcome"}
    for name, response in DOC["components"]["responses"].items():
        schema = response["content"]["application/json"]["schema"]
        assert schema == (with_outcome if name in ("FleetUnavailable", "OwnerTimeout") else error)
    # the one shape, with outcome required in it
    assert DOC["components"]["schemas"]["ErrorWithOutcome"]["allOf"][0] == error
    assert "outcome" in DOC["components"]["schemas"]["Error"]["properties"]["error"]["properties"]


def test_a_fresh_document_each_call() -> None:
    first = document()
    first["paths"].clear()
    assert document()["paths"]


def test_a_node_without_a_token_serves_a_document_without_security() -> None:
    open_doc = document(secured=False)
    assert "security" not in open_doc
    assert "securitySchemes" not in open_doc["components"]
    for item in open_doc["paths"].values():
        for operation in item.values():
            assert "401" not in operation["responses"]
            assert "security" not in operation
    assert open_doc["paths"].keys() == DOC["paths"].keys()
