"""The admin app's decisions that need no socket: the token check and the route table."""

from __future__ import annotations

import pytest

from paradoxplex.admin import routes
from paradoxplex.admin.app import OPEN_PATHS, bearer_matches, build_app
from paradoxplex.admin.control import Control
from paradoxplex.admin.handlers import AdminHandlers
from paradoxplex.admin.openapi import document
from tests.support.admin_control import FakeControl

TOKEN = b"t0ken"


def control() -> Control:
    """The shared fake; the route table needs only its node id, so it is never called."""
    return FakeControl("n-1")


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        ("Bearer t0ken", True),
        ("bearer t0ken", True),
        ("BEARER  t0ken ", True),
        (None, False),
        ("", False),
        ("t0ken", False),
        ("Bearer", False),
        ("Bearer ", False),
        ("Bearer t0ke", False),
        ("Bearer t0kenn", False),
        ("Basic t0ken", False),
        ("Bearer tökén", False),
        ("Bearer \udcff", False),
    ],
)
def test_bearer_matches(header: str | None, ok: bool) -> None:
    assert bearer_matches(header, TOKEN) is ok


def test_the_router_serves_what_the_document_describes() -> None:
    app = build_app(control(), token=None)
    served = set()
    for route in app.router.routes():
        assert route.resource is not None
        served.add((route.method.lower(), route.resource.canonical))
    described = {(method, path) for path, item in document()["paths"].items() for method in item}
    assert served == described


def test_the_route_table_has_no_duplicates() -> None:
    routes = [(method, path) for method, path, _ in AdminHandlers(control()).routes()]
    assert len(routes) == len(set(routes))


def test_the_document_and_the_token_check_agree_on_what_is_public() -> None:
    public = {
        path
        for path, item in document()["paths"].items()
        for operation in item.values()
        if operation.get("security") == []
    }
    assert public == {"/livez", "/readyz", "/ui", "/ui/", "/ui/{name}"}
    assert {path for path in public if "{" not in path} == OPEN_PATHS


@pytest.mark.parametrize(
    ("handler", "operation_id"),
    [("list_nodes", "listNodes"), ("send_to_socket", "sendToSocket"), ("livez", "livez")],
)
def test_an_operation_is_named_for_its_handler(handler: str, operation_id: str) -> None:
    [route] = [route for route in routes.ROUTES if route.handler == handler]
    assert route.operation_id == operation_id
    assert document()["paths"][route.path][route.method.lower()]["operationId"] == operation_id


def test_a_uuid_takes_any_one_segment_on_the_router() -> None:
    paths = {route.path: route.router_path for route in routes.ROUTES}
    assert paths["/v1/sockets/{uuid}/send"] == "/v1/sockets/{uuid:[^/]+}/send"
    assert paths["/v1/upstreams/{id}/drain"] == "/v1/upstreams/{id}/drain"


def test_handlers_repr() -> None:
    assert repr(AdminHandlers(control(), max_body=10)) == "<AdminHandlers node=n-1 max_body=10>"


def test_an_empty_token_is_a_mistake() -> None:
    with pytest.raises(ValueError, match="token"):
        build_app(control(), token="")
