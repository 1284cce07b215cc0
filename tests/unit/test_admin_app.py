"""The admin app's decisions that need no socket: the token check and the route table."""

from __future__ import annotations

from typing import Any

import pytest

from paradoxplex.admin.app import AdminHandlers, bearer_matches, build_app
from paradoxplex.admin.control import Control
from paradoxplex.admin.openapi import document
from paradoxplex.shared.sessions import BroadcastTarget, SessionState
from paradoxplex.shared.upstreams import UpstreamSpec

TOKEN = b"t0ken"


class IdleControl:
    """A Control that is never called: the route table needs only its node id."""

    node_id = "n-1"

    async def list_nodes(self) -> list[dict[str, Any]]:
        return []

    async def list_sockets(
        self,
        *,
        node: str | None,
        state: SessionState | None,
        label: tuple[str, str] | None,
        limit: int,
        cursor: str | None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        return [], None

    async def get_socket(self, session: str) -> dict[str, Any]:
        return {}

    async def send(self, session: str, payload: bytes) -> None:
        pass

    async def pause(self, session: str) -> None:
        pass

    async def resume(self, session: str) -> None:
        pass

    async def set_labels(self, session: str, labels: dict[str, str]) -> None:
        pass

    async def close(self, session: str) -> None:
        pass

    async def broadcast(
        self, target: BroadcastTarget, label: tuple[str, str] | None, payload: bytes
    ) -> int:
        return 0

    async def list_upstreams(self) -> list[dict[str, Any]]:
        return []

    async def add_upstream(self, spec: UpstreamSpec) -> dict[str, Any]:
        return spec.to_dict()

    async def remove_upstream(self, upstream_id: str) -> None:
        pass

    async def drain_upstream(self, upstream_id: str) -> dict[str, Any]:
        return {}

    async def drain_node(self, node_id: str) -> dict[str, Any]:
        return {}

    def live(self) -> bool:
        return True

    async def ready(self) -> tuple[bool, dict[str, Any]]:
        return True, {}

    def metrics(self) -> tuple[bytes, str]:
        return b"", "text/plain"


def control() -> Control:
    return IdleControl()


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


def test_handlers_repr() -> None:
    assert repr(AdminHandlers(control(), max_body=10)) == "<AdminHandlers node=n-1 max_body=10>"


def test_an_empty_token_is_a_mistake() -> None:
    with pytest.raises(ValueError, match="token"):
        build_app(control(), token="")
