"""The OpenAPI 3.1 description of the admin API, served at ``GET /openapi.json``.

Rules:
- ``paths`` is built from ``routes.ROUTES``, the table the app's router is built from: every
  route the app serves is described, and nothing else. ``components`` is the named schemas
  (``components``) and the error answers (``schemas``).
- Every route needs ``Authorization: Bearer <token>`` when the node has a token, except the
  public ones, the probes ``/livez`` and ``/readyz`` and the dashboard (``security: []``). A
  node without a token serves the document without security and without 401 answers
  (``document(secured=False)``).
- Every operation can answer 500, every secured one 401, every one with a body 400 and 413.
- Every action (a ``keyed`` row) takes the ``Idempotency-Key`` header, can answer 400 (a
  malformed key), 409 (a call with the key is in progress) and 422 (the key came with
  another request), and every answer of it may carry ``Idempotent-Replayed: true``.
- A 503 or 504 body says ``outcome``: ``not_applied`` or ``unknown``.
- Actions answer 200 ``{"ok": true}``; deletions answer 204 without a body; creation 201.
- Errors share one shape, ``{"error": {"code", "message"}}``.
- The document is exact: what it allows the API accepts, what it refuses the API refuses
  (a test runs schemathesis against a live node).
"""

from __future__ import annotations

import copy
from typing import Any

from paradoxplex.admin import components, schemas
from paradoxplex.admin.routes import ROUTES, Route

VERSION = "1"


def operation(route: Route) -> schemas.Schema:
    """The OpenAPI operation object of one row of the route table."""
    answers: schemas.Schema = copy.deepcopy(route.answers)
    always = () if route.public else ("401",)
    extra = ("400", "413") if route.body else ()
    keyed = ("400", "409", "422") if route.keyed else ()
    for status in sorted({*route.errors, *always, *extra, *keyed, "500"}):
        answers[status] = schemas.ref("responses", schemas.ERROR_RESPONSES[status][0])
    if route.keyed:
        for status, answer in answers.items():
            if status.startswith("2"):
                answer["headers"] = {schemas.REPLAYED_HEADER: schemas.REPLAYED}
    described: schemas.Schema = {
        "operationId": route.operation_id,
        "summary": route.summary,
        "responses": answers,
    }
    parameters = [*route.params, *((schemas.IDEMPOTENCY_KEY,) if route.keyed else ())]
    if parameters:
        described["parameters"] = parameters
    if route.body:
        described["requestBody"] = {
            "required": True,
            **schemas.json_body(schemas.schema(route.body)),
        }
    if route.public:
        described["security"] = []
    return described


def paths() -> schemas.Schema:
    """``paths``: one item per path of the table, one operation per method, in table order."""
    items: schemas.Schema = {}
    for route in ROUTES:
        items.setdefault(route.path, {})[route.method.lower()] = operation(route)
    return items


def document(*, secured: bool = True) -> dict[str, Any]:
    """The whole OpenAPI 3.1 document (a fresh dict on every call); ``secured``: the node
    has a token."""
    whole = copy.deepcopy(_document())  # the table's rows stay as they are
    if not secured:
        del whole["security"]
        del whole["components"]["securitySchemes"]
        for item in whole["paths"].values():
            for described in item.values():
                described.pop("security", None)
                described["responses"].pop("401", None)
    return whole


def _document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "paradoxplex admin API",
            "version": VERSION,
            "description": "Every node answers for the whole fleet.",
        },
        "paths": paths(),
        "components": {
            "schemas": components.schemas(),
            "responses": schemas.responses(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }
