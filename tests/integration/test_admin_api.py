"""The admin HTTP API on a real port, in front of the shared recording ``FakeControl``."""

from __future__ import annotations

import base64
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from paradoxplex.admin import openapi
from paradoxplex.admin.app import build_app
from paradoxplex.admin.client import AdminAPIError, AdminClient, AdminUnreachable
from paradoxplex.shared.retry import RetryPolicy
from paradoxplex.shared.sessions import BroadcastTarget, SessionState
from tests.support.admin_control import (
    FAR,
    METRICS,
    METRICS_TYPE,
    NODE,
    S1,
    S2,
    S3,
    SILENT,
    FakeControl,
)
from tests.support.ports import free_port

TOKEN = "s3cret-token"
QUICK = RetryPolicy(first=0.01, cap=0.02, attempts=3)


@dataclass
class Answer:
    status: int
    body: Any
    headers: Any
    raw: bytes


Call = Callable[..., Awaitable[Answer]]


@dataclass
class Server:
    url: str
    control: FakeControl
    app: web.Application


async def _start(token: str | None, max_body: int) -> tuple[web.AppRunner, Server]:
    control = FakeControl()
    app = build_app(control, token=token, max_body=max_body)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    return runner, Server(f"http://{host}:{port}", control, app)


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    runner, running = await _start(None, 4096)
    yield running
    await runner.cleanup()


@pytest.fixture
async def secured() -> AsyncIterator[Server]:
    runner, running = await _start(TOKEN, 4096)
    yield running
    await runner.cleanup()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def caller(http: aiohttp.ClientSession, running: Server) -> Call:
    async def call(method: str, path: str, **kwargs: Any) -> Answer:
        async with http.request(method, running.url + path, **kwargs) as response:
            raw = await response.read()
            is_json = response.content_type == "application/json"
            body = orjson.loads(raw) if raw and is_json else raw
            return Answer(response.status, body, response.headers, raw)

    return call


@pytest.fixture
def call(http: aiohttp.ClientSession, server: Server) -> Call:
    return caller(http, server)


def error_code(answer: Answer) -> str:
    assert set(answer.body) == {"error"}
    said = {"code", "message"} | ({"outcome"} if answer.status in (503, 504) else set())
    assert set(answer.body["error"]) == said
    return str(answer.body["error"]["code"])


# --- nodes, sockets -------------------------------------------------------------------------


async def test_nodes_are_listed(call: Call) -> None:
    answer = await call("GET", "/v1/nodes")
    assert answer.status == 200
    assert [node["id"] for node in answer.body["items"]] == [NODE, "node-b"]
    assert answer.body["cursor"] is None


async def test_sockets_default_query(call: Call, server: Server) -> None:
    answer = await call("GET", "/v1/sockets")
    assert answer.status == 200
    assert {item["uuid"] for item in answer.body["items"]} == set(server.control.sessions)
    assert answer.body["cursor"] is None
    assert server.control.calls == [("list_sockets", None, None, None, 100, None)]


async def test_sockets_filters_pass_through(call: Call, server: Server) -> None:
    query = {"node": NODE, "state": "paused", "label": "site=a", "limit": "7", "cursor": "0"}
    answer = await call("GET", "/v1/sockets", params=query)
    assert answer.status == 200
    assert answer.body == {"items": [], "cursor": None, "partial": False}
    expected = ("list_sockets", NODE, SessionState.PAUSED, ("site", "a"), 7, "0")
    assert server.control.calls == [expected]


async def test_sockets_pages_follow_the_cursor(call: Call) -> None:
    first = await call("GET", "/v1/sockets", params={"limit": "3"})
    assert len(first.body["items"]) == 3
    assert first.body["cursor"] is not None
    rest = await call("GET", "/v1/sockets", params={"limit": "3", "cursor": first.body["cursor"]})
    assert len(rest.body["items"]) == 1
    assert rest.body["cursor"] is None
    seen = {item["uuid"] for item in first.body["items"] + rest.body["items"]}
    assert seen == {S1, S2, S3, FAR}


@pytest.mark.parametrize(
    ("query", "key"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"limit": "-1"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"state": "sleeping"}, "state"),
        ({"label": "novalue"}, "label"),
        ({"label": "bad key=x"}, "label"),
        ({"colour": "red"}, "colour"),
    ],
)
async def test_bad_socket_queries_are_400(call: Call, query: dict[str, str], key: str) -> None:
    answer = await call("GET", "/v1/sockets", params=query)
    assert answer.status == 400
    assert error_code(answer) == "bad_request"
    assert answer.body["error"]["message"].startswith(f"{key}:")


async def test_a_repeated_query_parameter_is_400(call: Call) -> None:
    answer = await call("GET", "/v1/sockets?limit=1&limit=2")
    assert answer.status == 400
    assert "limit" in answer.body["error"]["message"]


async def test_one_socket(call: Call) -> None:
    answer = await call("GET", f"/v1/sockets/{S1}")
    assert answer.status == 200
    assert answer.body["uuid"] == S1
    assert answer.body["node"] == NODE
    assert answer.body["labels"] == {"site": "a"}


async def test_unknown_socket_is_404(call: Call) -> None:
    answer = await call("GET", "/v1/sockets/00000000-0000-4000-8000-000000000000")
    assert answer.status == 404
    assert error_code(answer) == "not_found"


@pytest.mark.parametrize(
    ("method", "suffix"),
    [
        ("GET", ""),
        ("DELETE", ""),
        ("POST", "/pause"),
        ("POST", "/resume"),
        ("POST", "/send"),
        ("PUT", "/labels"),
    ],
)
@pytest.mark.parametrize("bad", ["not-a-uuid", S1.upper(), S1.replace("-", ""), "{" + S1 + "}"])
async def test_a_non_canonical_uuid_is_400(call: Call, method: str, suffix: str, bad: str) -> None:
    answer = await call(method, f"/v1/sockets/{bad}{suffix}", json={"text": "x"})
    assert answer.status == 400
    assert error_code(answer) == "bad_request"
    assert answer.body["error"]["message"].startswith("uuid:")


# --- socket actions -------------------------------------------------------------------------


async def test_send_text(call: Call, server: Server) -> None:
    answer = await call("POST", f"/v1/sockets/{S1}/send", json={"text": "héllo\n"})
    assert (answer.status, answer.body) == (200, {"ok": True})
    assert server.control.sent[S1] == ["héllo\n".encode()]


async def test_send_base64(call: Call, server: Server) -> None:
    payload = bytes(range(256))
    body = {"base64": base64.b64encode(payload).decode()}
    answer = await call("POST", f"/v1/sockets/{S1}/send", json=body)
    assert answer.status == 200
    assert server.control.sent[S1] == [payload]


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ({"base64": "not base64!"}, "base64"),
        ({"base64": "QUJD="}, "base64"),
        ({"text": "a", "base64": "QQ=="}, "payload"),
        ({}, "payload"),
        ({"text": 5}, "text"),
        ({"text": ""}, "text"),
        ({"text": "a", "extra": 1}, "extra"),
        (["text", "a"], "body"),
    ],
)
async def test_bad_payloads_are_400(call: Call, body: Any, key: str, server: Server) -> None:
    answer = await call("POST", f"/v1/sockets/{S1}/send", json=body)
    assert answer.status == 400
    assert error_code(answer) == "bad_request"
    assert answer.body["error"]["message"].startswith(f"{key}:")
    assert S1 not in server.control.sent


@pytest.mark.parametrize("raw", [b"{not json", b"", b"\xff\xfe", b'{"text": "a"'])
async def test_malformed_json_is_400_bad_json(call: Call, raw: bytes) -> None:
    headers = {"Content-Type": "application/json"}
    answer = await call("POST", f"/v1/sockets/{S1}/send", data=raw, headers=headers)
    assert answer.status == 400
    assert error_code(answer) == "bad_json"


async def test_wrong_content_type_is_400(call: Call) -> None:
    headers = {"Content-Type": "application/xml"}
    answer = await call("POST", f"/v1/sockets/{S1}/send", data=b'{"text":"a"}', headers=headers)
    assert answer.status == 400
    assert answer.body["error"]["message"].startswith("content-type:")


async def test_a_body_without_content_type_is_read_as_json(call: Call, server: Server) -> None:
    answer = await call(
        "POST", f"/v1/sockets/{S1}/send", data=b'{"text":"a"}', skip_auto_headers=["Content-Type"]
    )
    assert answer.status == 200
    assert server.control.sent[S1] == [b"a"]


async def test_a_body_over_the_limit_is_413(call: Call, server: Server) -> None:
    big = {"text": "x" * 5000}
    answer = await call("POST", f"/v1/sockets/{S1}/send", json=big)
    assert answer.status == 413
    assert error_code(answer) == "payload_too_large"
    assert S1 not in server.control.sent


async def test_a_chunked_body_over_the_limit_is_413(call: Call) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"text": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}'

    headers = {"Content-Type": "application/json"}
    answer = await call("POST", f"/v1/sockets/{S1}/send", data=chunks(), headers=headers)
    assert answer.status == 413
    assert error_code(answer) == "payload_too_large"


async def test_pause_and_resume(call: Call, server: Server) -> None:
    paused = await call("POST", f"/v1/sockets/{S1}/pause")
    assert (paused.status, paused.body) == (200, {"ok": True})
    assert server.control.sessions[S1].state is SessionState.PAUSED
    resumed = await call("POST", f"/v1/sockets/{S1}/resume")
    assert (resumed.status, resumed.body) == (200, {"ok": True})
    assert server.control.sessions[S1].state is SessionState.ACTIVE


async def test_labels_are_replaced(call: Call, server: Server) -> None:
    answer = await call("PUT", f"/v1/sockets/{S1}/labels", json={"team": "x", "tier": "1"})
    assert (answer.status, answer.body) == (200, {"ok": True})
    assert server.control.sessions[S1].labels == {"team": "x", "tier": "1"}


@pytest.mark.parametrize(
    "body",
    [{"bad key": "x"}, {"k": 1}, ["k", "v"], {"k": "v" * 200}, {f"k{i}": "v" for i in range(40)}],
)
async def test_bad_labels_are_400(call: Call, body: Any, server: Server) -> None:
    answer = await call("PUT", f"/v1/sockets/{S1}/labels", json=body)
    assert answer.status == 400
    assert answer.body["error"]["message"].startswith(("label:", "labels:"))
    assert server.control.sessions[S1].labels == {"site": "a"}


async def test_close_is_204_then_404(call: Call, server: Server) -> None:
    answer = await call("DELETE", f"/v1/sockets/{S1}")
    assert (answer.status, answer.raw) == (204, b"")
    assert S1 not in server.control.sessions
    again = await call("DELETE", f"/v1/sockets/{S1}")
    assert again.status == 404


async def test_owner_timeout_is_504_naming_the_node(call: Call) -> None:
    answer = await call("POST", f"/v1/sockets/{FAR}/send", json={"text": "x"})
    assert answer.status == 504
    assert error_code(answer) == "owner_timeout"
    assert SILENT in answer.body["error"]["message"]
    assert answer.body["error"]["outcome"] == "unknown"  # what the node said, passed on


async def test_fleet_unavailable_is_503(call: Call, server: Server) -> None:
    server.control.fleet_down = True
    answer = await call("GET", "/v1/nodes")
    assert answer.status == 503
    assert error_code(answer) == "fleet_unavailable"
    assert answer.body["error"]["outcome"] == "not_applied"  # a GET acts on nothing


async def test_an_unexpected_error_is_500_logged_without_payload(
    call: Call, server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    server.control.broken = True
    with caplog.at_level(logging.ERROR, logger="paradoxplex.admin"):
        answer = await call("POST", f"/v1/sockets/{S1}/send", json={"text": "PAYLOAD-SECRET"})
    assert answer.status == 500
    assert error_code(answer) == "internal"
    assert b"PAYLOAD-SECRET" not in answer.raw
    assert b"bug" not in answer.raw
    [record] = [r for r in caplog.records if r.name == "paradoxplex.admin"]
    assert record.exc_info is not None
    assert "PAYLOAD-SECRET" not in caplog.text


# --- broadcast ------------------------------------------------------------------------------


async def test_broadcast_counts_local_deliveries(call: Call, server: Server) -> None:
    answer = await call("POST", "/v1/broadcast", json={"target": "all", "text": "hi"})
    assert (answer.status, answer.body) == (200, {"delivered_local": 2})
    assert server.control.calls == [("broadcast", BroadcastTarget.ALL, None, b"hi")]


async def test_broadcast_with_a_label_and_base64(call: Call, server: Server) -> None:
    body = {"target": "active", "label": "site=a", "base64": "AAE="}
    answer = await call("POST", "/v1/broadcast", json=body)
    assert (answer.status, answer.body) == (200, {"delivered_local": 1})
    assert server.control.calls == [("broadcast", BroadcastTarget.ACTIVE, ("site", "a"), b"\0\1")]


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ({"target": "some", "text": "x"}, "target"),
        ({"text": "x"}, "target"),
        ({"target": "all", "label": "x", "text": "x"}, "label"),
        ({"target": "all", "label": 3, "text": "x"}, "label"),
        ({"target": "all"}, "payload"),
        ({"target": "all", "base64": "***"}, "base64"),
    ],
)
async def test_bad_broadcasts_are_400(call: Call, body: dict[str, Any], key: str) -> None:
    answer = await call("POST", "/v1/broadcast", json=body)
    assert answer.status == 400
    assert answer.body["error"]["message"].startswith(f"{key}:")


# --- upstreams and nodes --------------------------------------------------------------------


async def test_upstreams_are_listed_with_node_views(call: Call) -> None:
    answer = await call("GET", "/v1/upstreams")
    assert answer.status == 200
    [upstream] = answer.body["items"]
    assert upstream["id"] == "127.0.0.1:45888"
    assert upstream["nodes"][NODE] == {
        "state": "ready",
        "sent": 3,
        "received": 2,
        "errors": 0,
        "rtt_ms": 0.42,
    }
    assert upstream["nodes"]["far"]["reason"] == "unreachable: refused"
    assert answer.body["cursor"] is None


async def test_add_upstream_is_201_then_409(call: Call, server: Server) -> None:
    body = {"host": "10.1.1.1", "port": 9000, "ready_timeout": 5, "alive_timeout": 20}
    answer = await call("POST", "/v1/upstreams", json=body)
    assert answer.status == 201
    assert answer.body["id"] == "10.1.1.1:9000"
    assert answer.body["ready_timeout"] == 5.0
    assert "10.1.1.1:9000" in server.control.upstreams
    again = await call("POST", "/v1/upstreams", json=body)
    assert again.status == 409
    assert error_code(again) == "conflict"


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ({"host": "h", "port": 0}, "port"),
        ({"host": "h", "port": "80"}, "port"),
        ({"host": "", "port": 80}, "host"),
        ({"host": "h", "port": 80, "ready_timeout": 0}, "ready_timeout"),
        ({"host": "h", "port": 80, "colour": "red"}, "colour"),
        ("h:80", "body"),
    ],
)
async def test_bad_upstreams_are_400_naming_the_key(call: Call, body: Any, key: str) -> None:
    answer = await call("POST", "/v1/upstreams", json=body)
    assert answer.status == 400
    assert error_code(answer) == "bad_request"
    assert answer.body["error"]["message"].startswith(f"{key}:")


async def test_remove_upstream_is_204_then_404(call: Call, server: Server) -> None:
    answer = await call("DELETE", "/v1/upstreams/127.0.0.1:45888")
    assert (answer.status, answer.raw) == (204, b"")
    assert server.control.upstreams == {}
    again = await call("DELETE", "/v1/upstreams/127.0.0.1:45888")
    assert again.status == 404
    assert error_code(again) == "not_found"


async def test_drain_upstream(call: Call) -> None:
    answer = await call("POST", "/v1/upstreams/127.0.0.1:45888/drain")
    assert answer.status == 200
    assert answer.body["mode"] == "draining"


async def test_drain_node(call: Call) -> None:
    answer = await call("POST", "/v1/nodes/node-b/drain")
    assert (answer.status, answer.body) == (
        200,
        {"id": "node-b", "draining": True, "at": 1714564800.0},
    )
    silent = await call("POST", f"/v1/nodes/{SILENT}/drain")
    assert silent.status == 504


# --- probes, metrics, openapi, routing ------------------------------------------------------


LIVE = {"status": "ok", "node": "node-a", "incarnation": "0123456789ab"}


async def test_livez_names_the_node_and_its_incarnation(call: Call) -> None:
    answer = await call("GET", "/livez")
    assert (answer.status, answer.body) == (200, LIVE)


async def test_readyz_ready_and_not(call: Call, server: Server) -> None:
    ready = await call("GET", "/readyz")
    assert (ready.status, ready.body) == (200, {"ready": True, "listening": True})
    server.control.ready_answer = (False, {"listening": True, "redis": "unreachable"})
    not_ready = await call("GET", "/readyz")
    assert not_ready.status == 503
    assert not_ready.body == {"ready": False, "listening": True, "redis": "unreachable"}


async def test_metrics_keep_their_content_type(call: Call) -> None:
    answer = await call("GET", "/metrics")
    assert answer.status == 200
    assert answer.raw == METRICS
    assert answer.headers["Content-Type"] == METRICS_TYPE


def served_routes(app: web.Application) -> set[tuple[str, str]]:
    routes = set()
    for route in app.router.routes():
        assert route.resource is not None
        routes.add((route.method.lower(), route.resource.canonical))
    return routes


async def test_openapi_describes_every_served_route(call: Call, server: Server) -> None:
    answer = await call("GET", "/openapi.json")
    assert answer.status == 200
    assert answer.body["openapi"].startswith("3.1")
    described = {(method, path) for path, item in answer.body["paths"].items() for method in item}
    assert described == served_routes(server.app)
    assert answer.body == openapi.document(secured=False)  # this server has no token


async def test_a_node_with_a_token_serves_the_secured_document(
    http: aiohttp.ClientSession, secured: Server
) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    answer = await caller(http, secured)("GET", "/openapi.json", headers=headers)
    assert answer.body == openapi.document()
    assert answer.body["security"] == [{"bearer": []}]


async def test_unknown_route_is_404_json(call: Call) -> None:
    answer = await call("GET", "/v1/nothing")
    assert answer.status == 404
    assert error_code(answer) == "not_found"
    assert "/v1/nothing" in answer.body["error"]["message"]


async def test_wrong_method_is_405_json(call: Call) -> None:
    answer = await call("PATCH", "/v1/upstreams")
    assert answer.status == 405
    assert error_code(answer) == "method_not_allowed"
    assert set(answer.headers["Allow"].split(", ")) == {"GET", "POST"}


async def test_one_debug_line_per_request(call: Call, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="paradoxplex.admin"):
        await call("GET", f"/v1/sockets/{S1}")
    lines = [r.getMessage() for r in caplog.records if r.name == "paradoxplex.admin"]
    assert lines == [f"GET /v1/sockets/{S1} 200"]


# --- auth -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer nope"},
        {"Authorization": TOKEN},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": "Bearer é"},
    ],
)
@pytest.mark.parametrize("path", ["/v1/nodes", "/metrics", "/openapi.json", "/v1/nothing"])
async def test_a_missing_or_bad_token_is_401(
    http: aiohttp.ClientSession, secured: Server, headers: dict[str, str], path: str
) -> None:
    answer = await caller(http, secured)("GET", path, headers=headers)
    assert answer.status == 401
    assert error_code(answer) == "unauthorized"
    assert answer.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize("scheme", ["Bearer", "bearer"])
async def test_the_right_token_passes(
    http: aiohttp.ClientSession, secured: Server, scheme: str
) -> None:
    answer = await caller(http, secured)(
        "GET", "/v1/nodes", headers={"Authorization": f"{scheme} {TOKEN}"}
    )
    assert answer.status == 200


@pytest.mark.parametrize("path", ["/livez", "/readyz"])
async def test_probes_need_no_token(
    http: aiohttp.ClientSession, secured: Server, path: str
) -> None:
    answer = await caller(http, secured)("GET", path)
    assert answer.status == 200


async def test_the_token_is_never_logged(
    http: aiohttp.ClientSession, secured: Server, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        call = caller(http, secured)
        await call("GET", "/v1/nodes", headers={"Authorization": f"Bearer {TOKEN}"})
        await call("GET", "/v1/nodes", headers={"Authorization": f"Bearer {TOKEN}-wrong"})
    assert TOKEN not in caplog.text


def test_an_empty_token_is_refused() -> None:
    with pytest.raises(ValueError, match="token"):
        build_app(FakeControl(), token="")


# --- the client against the same app --------------------------------------------------------


@pytest.fixture
async def client(server: Server) -> AsyncIterator[AdminClient]:
    async with AdminClient(server.url, retry=QUICK) as admin:
        yield admin


async def test_client_lists_and_reads(client: AdminClient, server: Server) -> None:
    assert [node["id"] for node in await client.list_nodes()] == [NODE, "node-b"]
    page = await client.list_sockets(state="active", limit=1)
    assert len(page.items) == 1
    assert page.cursor is not None
    every = [item["uuid"] async for item in client.iter_sockets(limit=1)]
    assert sorted(every) == sorted(server.control.sessions)
    assert (await client.get_socket(S1))["remote"] == "10.0.0.1:5000"


async def test_client_socket_actions(client: AdminClient, server: Server) -> None:
    await client.send(S1, "text")
    await client.send(S1, b"\x00bytes")
    assert server.control.sent[S1] == [b"text", b"\x00bytes"]
    await client.pause(S1)
    assert server.control.sessions[S1].state is SessionState.PAUSED
    await client.resume(S1)
    assert server.control.sessions[S1].state is SessionState.ACTIVE
    await client.set_labels(S1, {"a": "b"})
    assert server.control.sessions[S1].labels == {"a": "b"}
    assert await client.broadcast("all", "x", label="a=b") == 1
    await client.close_socket(S1)
    assert S1 not in server.control.sessions


async def test_client_upstreams_and_nodes(client: AdminClient, server: Server) -> None:
    added = await client.add_upstream("::1", 9000, ready_timeout=2.5)
    assert added["id"] == "[::1]:9000"
    assert added["ready_timeout"] == 2.5
    assert {u["id"] for u in await client.list_upstreams()} == {"127.0.0.1:45888", "[::1]:9000"}
    assert (await client.drain_upstream("[::1]:9000"))["mode"] == "draining"
    await client.remove_upstream("[::1]:9000")
    assert "[::1]:9000" not in server.control.upstreams
    assert (await client.drain_node(NODE))["draining"] is True


async def test_client_probes_metrics_openapi(client: AdminClient, server: Server) -> None:
    assert await client.livez() == LIVE
    assert (await client.readyz())["ready"] is True
    server.control.ready_answer = (False, {})
    assert await client.readyz() == {"ready": False}
    assert await client.metrics() == METRICS.decode()
    assert (await client.openapi())["openapi"] == "3.1.0"


@pytest.mark.parametrize(
    ("act", "status", "code"),
    [
        (lambda c: c.get_socket("nope"), 400, "bad_request"),
        (lambda c: c.get_socket("00000000-0000-4000-8000-000000000000"), 404, "not_found"),
        (lambda c: c.send(FAR, "x"), 504, "owner_timeout"),
        (lambda c: c.add_upstream("127.0.0.1", 45888), 409, "conflict"),
        (lambda c: c.remove_upstream("10.9.9.9:1"), 404, "not_found"),
        (lambda c: c.list_sockets(limit=5000), 400, "bad_request"),
    ],
)
async def test_client_raises_api_errors(
    client: AdminClient, act: Callable[[AdminClient], Awaitable[Any]], status: int, code: str
) -> None:
    with pytest.raises(AdminAPIError) as raised:
        await act(client)
    assert (raised.value.status, raised.value.code) == (status, code)
    assert raised.value.message


async def test_client_retries_an_action_with_its_key_until_the_replay(
    client: AdminClient, server: Server
) -> None:
    server.control.lose_answers = 2  # it acted; the answer was lost twice
    await client.send(S1, "once")
    assert server.control.sent == {S1: [b"once"]}
    assert client.retried == 2
    keys = {once.key for once in server.control.onces}
    assert len(server.control.onces) == 3
    assert len(keys) == 1
    await client.send(S1, "again")
    assert len({once.key for once in server.control.onces}) == 2, "a fresh key per action"


async def test_client_gives_up_after_its_policy_saying_the_outcome(
    client: AdminClient, server: Server
) -> None:
    with pytest.raises(AdminAPIError) as raised:
        await client.pause(FAR, key="mine")
    assert (raised.value.status, raised.value.outcome, raised.value.key) == (504, "unknown", "mine")
    assert [once.key for once in server.control.onces] == ["mine"] * 3
    with pytest.raises(AdminAPIError) as refused:
        await client.remove_upstream("10.9.9.9:1")
    assert (refused.value.status, refused.value.outcome) == (404, None)
    assert client.retried == 2, "a 404 is not tried again"


async def test_client_sends_the_token(secured: Server) -> None:
    async with AdminClient(secured.url, token=TOKEN) as admin:
        assert len(await admin.list_nodes()) == 2
    async with AdminClient(secured.url) as anonymous:
        with pytest.raises(AdminAPIError) as raised:
            await anonymous.list_nodes()
    assert (raised.value.status, raised.value.code) == (401, "unauthorized")


async def test_client_reports_an_unreachable_node() -> None:
    async with AdminClient(f"http://127.0.0.1:{free_port()}", timeout=5) as admin:
        with pytest.raises(AdminUnreachable) as raised:
            await admin.list_nodes()
    assert "refused" in raised.value.reason


# --- idempotency keys ---------------------------------------------------------------------

ACTIONS: list[tuple[str, str, Any]] = [
    ("POST", f"/v1/sockets/{S1}/send", {"text": "hi"}),
    ("POST", f"/v1/sockets/{S1}/pause", None),
    ("POST", f"/v1/sockets/{S1}/resume", None),
    ("PUT", f"/v1/sockets/{S1}/labels", {"site": "z"}),
    ("DELETE", f"/v1/sockets/{S1}", None),
    ("POST", "/v1/broadcast", {"target": "all", "text": "hi"}),
    ("POST", "/v1/upstreams", {"host": "127.0.0.1", "port": 45999}),
    ("POST", "/v1/upstreams/127.0.0.1:45888/drain", None),
    ("DELETE", "/v1/upstreams/127.0.0.1:45888", None),
    ("POST", f"/v1/nodes/{NODE}/drain", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ACTIONS, ids=[a[1] for a in ACTIONS])
async def test_every_action_replays_its_first_answer_under_one_key(
    call: Call, server: Server, method: str, path: str, body: Any
) -> None:
    headers = {"Idempotency-Key": f"k-{method}-{path}"}
    first = await call(method, path, json=body, headers=headers)
    assert 200 <= first.status < 300, first.body
    assert "Idempotent-Replayed" not in first.headers
    again = await call(method, path, json=body, headers=headers)
    assert (again.status, again.raw) == (first.status, first.raw)
    assert again.headers["Idempotent-Replayed"] == "true"
    [once, twice] = server.control.onces
    assert once.key == twice.key == headers["Idempotency-Key"]
    assert once.fingerprint == twice.fingerprint
    assert len(server.control.answers) == 1


async def test_a_key_reused_with_another_body_is_422(call: Call, server: Server) -> None:
    headers = {"Idempotency-Key": "k-1"}
    path = f"/v1/sockets/{S1}/send"
    assert (await call("POST", path, json={"text": "a"}, headers=headers)).status == 200
    other = await call("POST", path, json={"text": "b"}, headers=headers)
    assert other.status == 422
    assert error_code(other) == "idempotency_key_reused"
    elsewhere = await call("POST", f"/v1/sockets/{S2}/send", json={"text": "a"}, headers=headers)
    assert elsewhere.status == 422, "the same body for another socket is another request"
    assert server.control.sent == {S1: [b"a"]}


async def test_text_and_base64_of_the_same_bytes_are_one_request(
    call: Call, server: Server
) -> None:
    headers = {"Idempotency-Key": "k-1"}
    path = f"/v1/sockets/{S1}/send"
    await call("POST", path, json={"text": "hi"}, headers=headers)
    again = await call("POST", path, json={"base64": "aGk="}, headers=headers)
    assert again.status == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert server.control.sent == {S1: [b"hi"]}


async def test_an_error_answer_is_replayed_too(call: Call) -> None:
    headers = {"Idempotency-Key": "k-1"}
    missing = "00000000-0000-4000-8000-000000000000"
    first = await call("POST", f"/v1/sockets/{missing}/pause", headers=headers)
    again = await call("POST", f"/v1/sockets/{missing}/pause", headers=headers)
    assert (first.status, again.status) == (404, 404)
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["Idempotent-Replayed"] == "true"


@pytest.mark.parametrize("key", ["", "x" * 256, "caf\u00e9", "tab\there"], ids=repr)
async def test_a_malformed_key_is_400_and_nothing_acts(
    call: Call, server: Server, key: str
) -> None:
    raw_key = key.encode("utf-8").decode("latin-1")  # aiohttp sends header values as latin-1
    answer = await call(
        "POST", f"/v1/sockets/{S1}/send", json={"text": "a"}, headers={"Idempotency-Key": raw_key}
    )
    assert answer.status == 400
    assert error_code(answer) == "bad_request"
    assert "Idempotency-Key" in answer.body["error"]["message"]
    assert server.control.sent == {}


async def test_without_a_key_nothing_is_remembered(call: Call, server: Server) -> None:
    for _ in range(2):
        assert (await call("POST", f"/v1/sockets/{S1}/send", json={"text": "a"})).status == 200
    assert server.control.sent == {S1: [b"a", b"a"]}
    assert server.control.onces == []


async def test_a_504_keeps_its_outcome_and_a_get_never_says_unknown(
    call: Call, server: Server
) -> None:
    timed_out = await call("POST", f"/v1/sockets/{FAR}/pause", headers={"Idempotency-Key": "k-1"})
    assert timed_out.status == 504
    assert timed_out.body["error"]["outcome"] == "unknown"
    looked = await call("GET", f"/v1/sockets/{FAR}")
    assert looked.status == 504
    assert looked.body["error"]["outcome"] == "not_applied"
