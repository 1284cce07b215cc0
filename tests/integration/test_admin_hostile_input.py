"""A real node's admin API under hostile input: nothing it is sent splits a log line or reaches
the fleet unchecked, and malformed HTTP gets the API's JSON error shape and one log line."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from paradoxplex.node.node import Node
from tests.support.node_harness import running_node, start_upstream

BAD_HOSTS = ["127.0.0.1\n", "\u0000", "up\r\nWARNING forged line", "a b", "-up", "under_score"]


@pytest.fixture
async def node() -> AsyncIterator[Node]:
    server, _ = await start_upstream()
    try:
        async with running_node(server.port) as running:
            yield running
    finally:
        await server.stop(0)


@pytest.fixture
async def http(node: Node) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(node.admin_url) as session:
        yield session


async def request(
    http: aiohttp.ClientSession, method: str, path: str, body: Any = None
) -> tuple[int, Any]:
    async with http.request(method, path, json=body) as answer:
        raw = await answer.read()
        return answer.status, orjson.loads(raw) if raw else None


def lines_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records]


@pytest.mark.parametrize("host", BAD_HOSTS)
async def test_a_bad_upstream_host_is_400_and_never_stored(
    node: Node, http: aiohttp.ClientSession, host: str
) -> None:
    status, body = await request(http, "POST", "/v1/upstreams", {"host": host, "port": 9})
    assert status == 400
    assert body["error"]["code"] == "bad_request"
    assert body["error"]["message"].startswith("host: must ")
    _, listed = await request(http, "GET", "/v1/upstreams")
    assert [item["host"] for item in listed["items"]] == ["127.0.0.1"]


async def test_a_good_upstream_host_is_accepted(http: aiohttp.ClientSession) -> None:
    body = {"host": "upstream-1.example", "port": 6133.0, "ready_timeout": 0.5}
    status, answer = await request(http, "POST", "/v1/upstreams", body)
    assert status == 201
    assert answer["id"] == "upstream-1.example:6133"
    status, _ = await request(http, "DELETE", "/v1/upstreams/upstream-1.example:6133")
    assert status == 204


async def test_a_path_with_a_newline_is_logged_on_one_line(
    http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="paradoxplex.admin")
    async with http.get("/v1/nodes/a%0D%0AERROR%20forged%00/drain") as answer:
        assert answer.status == 405
    [line] = [text for text in lines_of(caplog) if "forged" in text]
    assert line == "GET /v1/nodes/a\\r\\nERROR forged\\x00/drain 405"


MALFORMED = {
    "10 kB URL": b"GET /v1/" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    "NUL in a header": b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Id: a\x00b\r\n\r\n",
    "10 kB header": b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Id: " + b"a" * 10_000 + b"\r\n\r\n",
    "not HTTP": b"HELLO THERE\r\n\r\n",
    "bad method": b"G\x01T / HTTP/1.1\r\nHost: x\r\n\r\n",
    "bad version": b"GET / HTTP/9\r\nHost: x\r\n\r\n",
    "bad chunk": (
        b"POST /v1/broadcast HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"
    ),
}


async def exchange(node: Node, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes to the admin port; (status, headers, body) of the answer."""
    host, port = node.admin_url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(data)
        async with asyncio.timeout(5.0):
            raw = await reader.read()
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in header_lines)
    return int(status_line.split(" ")[1]), {k.lower(): v for k, v in headers.items()}, body


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
async def test_malformed_http_gets_the_json_error_shape_and_one_log_line(
    node: Node, data: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    status, headers, body = await exchange(node, data)
    assert status == 400
    assert headers["content-type"].startswith("application/json")
    answer = orjson.loads(body)
    assert answer["error"]["code"] == "bad_request"
    assert set(answer["error"]) == {"code", "message"}
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [(r.name, r.levelname, r.exc_info) for r in loud] == [
        ("paradoxplex.admin", "WARNING", None)
    ]
    assert loud[0].getMessage().startswith("admin: refused a malformed request from 127.0.0.1")
    assert len(loud[0].getMessage().splitlines()) == 1


async def test_the_api_still_answers_after_malformed_requests(
    node: Node, http: aiohttp.ClientSession
) -> None:
    for data in MALFORMED.values():
        await exchange(node, data)
    status, body = await request(http, "GET", "/livez")
    live = {"status": "ok", "node": node.node_id, "incarnation": node.state.incarnation}
    assert (status, body) == (200, live)
