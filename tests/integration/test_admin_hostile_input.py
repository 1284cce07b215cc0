"""A real node's admin API under hostile input: nothing it is sent splits a log line or reaches
the fleet unchecked, and malformed HTTP gets the API's JSON error shape and one log line."""

from __future__ import annotations

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
