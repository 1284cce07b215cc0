"""The admin HTTP API of a real node, over real HTTP, acting on real sockets and upstreams."""

from __future__ import annotations

import base64
import uuid as uuidlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from paradoxplex.node.node import Node
from paradoxplex.shared.admission import Refusal
from paradoxplex.shared.drops import DropReason
from paradoxplex.shared.health import Health
from paradoxplex.upstream import UpstreamServer
from tests.support.eventually import eventually
from tests.support.node_harness import (
    Client,
    Recorder,
    clients,
    running_node,
    session_of,
    session_uuid,
    start_upstream,
    upstream_id,
)


@dataclass
class Setup:
    node: Node
    http: aiohttp.ClientSession
    upstream: UpstreamServer
    recorder: Recorder
    first: Client
    second: Client
    uuids: tuple[str, str]


@asynccontextmanager
async def setup(**overrides: Any) -> AsyncIterator[Setup]:
    """A node with one echo upstream, two connected sockets and an HTTP client of its admin."""
    server, recorder = await start_upstream()
    try:
        async with (
            running_node(server.port, **overrides) as node,
            clients(node, 2) as (first, second),
            aiohttp.ClientSession(node.admin_url) as http,
        ):
            uuids = (await session_uuid(node, first), await session_uuid(node, second))
            yield Setup(node, http, server, recorder, first, second, uuids)
    finally:
        await server.stop(0)


async def call(
    http: aiohttp.ClientSession, method: str, path: str, body: Any = None, *, data: bytes = b""
) -> tuple[int, Any]:
    """(status, JSON body or None)."""
    kwargs: dict[str, Any] = {"json": body}
    if body is None:
        kwargs = {"data": data or None, "headers": {"Content-Type": "application/json"}}
    async with http.request(method, path, **kwargs) as answer:
        text = await answer.text()
        if answer.content_type == "application/json" and text:
            return answer.status, await answer.json()
        return answer.status, text or None


async def test_list_get_and_label_sockets() -> None:
    async with setup() as s:
        first, second = s.uuids
        status, page = await call(s.http, "GET", "/v1/sockets")
        assert status == 200
        assert page["cursor"] is None
        assert sorted(item["uuid"] for item in page["items"]) == sorted(s.uuids)
        status, one = await call(s.http, "GET", f"/v1/sockets/{first}")
        assert status == 200
        assert one["node"] == s.node.node_id
        assert one["remote"] == s.first.remote_as_node_sees_it
        assert one["state"] == "active"
        await s.first.round_trip(b"counted")
        status, one = await call(s.http, "GET", f"/v1/sockets/{first}")
        assert (one["bytes_in"], one["bytes_out"]) == (7, 7)

        status, _ = await call(s.http, "PUT", f"/v1/sockets/{first}/labels", {"site": "a"})
        assert status == 200
        status, one = await call(s.http, "GET", f"/v1/sockets/{first}")
        assert one["labels"] == {"site": "a"}
        status, page = await call(s.http, "GET", "/v1/sockets?label=site=a")
        assert [item["uuid"] for item in page["items"]] == [first]
        status, page = await call(s.http, "GET", "/v1/sockets?limit=1")
        assert len(page["items"]) == 1
        status, rest = await call(s.http, "GET", f"/v1/sockets?limit=1&cursor={page['cursor']}")
        assert {page["items"][0]["uuid"], rest["items"][0]["uuid"]} == {first, second}


async def test_send_text_and_base64_to_a_socket() -> None:
    async with setup() as s:
        first, _ = s.uuids
        status, body = await call(s.http, "POST", f"/v1/sockets/{first}/send", {"text": "héllo"})
        assert (status, body) == (200, {"ok": True})
        assert await s.first.receive_exactly(len("héllo".encode())) == "héllo".encode()
        raw = bytes(range(256))
        encoded = base64.b64encode(raw).decode()
        status, _ = await call(s.http, "POST", f"/v1/sockets/{first}/send", {"base64": encoded})
        assert status == 200
        assert await s.first.receive_exactly(256) == raw
        assert s.recorder.data == []  # admin sends go to the socket, not to an upstream


async def test_a_paused_socket_is_read_only_after_resume() -> None:
    async with setup() as s:
        first, _ = s.uuids
        status, _ = await call(s.http, "POST", f"/v1/sockets/{first}/pause")
        assert status == 200
        status, one = await call(s.http, "GET", f"/v1/sockets/{first}")
        assert one["state"] == "paused"
        status, page = await call(s.http, "GET", "/v1/sockets?state=paused")
        assert [item["uuid"] for item in page["items"]] == [first]
        await s.first.send(b"sent while paused")
        for number in range(5):  # traffic on another socket: the node is reading
            await s.second.round_trip(f"other {number}".encode())
        assert b"sent while paused" not in s.recorder.data
        assert session_of(s.node, s.first).info.bytes_in == 0  # type: ignore[union-attr]
        status, _ = await call(s.http, "POST", f"/v1/sockets/{first}/resume")
        assert status == 200
        assert await s.first.receive_exactly(17) == b"sent while paused"
        assert s.recorder.data[-1] == b"sent while paused"
        status, one = await call(s.http, "GET", f"/v1/sockets/{first}")
        assert one["state"] == "active"


async def test_close_a_socket() -> None:
    async with setup() as s:
        first, _ = s.uuids
        status, _ = await call(s.http, "DELETE", f"/v1/sockets/{first}")
        assert status == 204
        assert await s.first.closed_by_peer() == b""
        await eventually(lambda: first not in s.node.sessions)

        async def gone() -> bool:
            status, _ = await call(s.http, "GET", f"/v1/sockets/{first}")
            return status == 404

        await eventually(gone, message="the closed socket leaves the list")
        await s.second.round_trip(b"unaffected")


async def test_broadcast_with_target_and_label_filters() -> None:
    async with setup() as s:
        first, second = s.uuids
        await call(s.http, "PUT", f"/v1/sockets/{first}/labels", {"site": "x"})
        await call(s.http, "PUT", f"/v1/sockets/{second}/labels", {"site": "y"})
        status, body = await call(
            s.http, "POST", "/v1/broadcast", {"target": "all", "label": "site=x", "text": "x;"}
        )
        assert (status, body) == (200, {"delivered_local": 1})
        await call(s.http, "POST", f"/v1/sockets/{second}/pause")
        status, body = await call(
            s.http, "POST", "/v1/broadcast", {"target": "active", "text": "a;"}
        )
        assert body == {"delivered_local": 1}
        status, body = await call(
            s.http, "POST", "/v1/broadcast", {"target": "inactive", "text": "i;"}
        )
        assert body == {"delivered_local": 1}
        status, body = await call(
            s.http, "POST", "/v1/broadcast", {"target": "all", "label": "site=none", "text": "n;"}
        )
        assert body == {"delivered_local": 0}
        for uuid in s.uuids:
            await call(s.http, "POST", f"/v1/sockets/{uuid}/send", {"text": "END;"})
        assert await s.first.receive_until(b"END;") == b"x;a;END;"
        assert await s.second.receive_until(b"END;") == b"i;END;"


async def test_add_drain_and_remove_upstreams() -> None:
    async with setup(framing="line") as s:
        extra, extra_recorder = await start_upstream()
        try:
            original_id, extra_id = upstream_id(s.upstream.port), upstream_id(extra.port)
            status, page = await call(s.http, "GET", "/v1/upstreams")
            assert [item["id"] for item in page["items"]] == [original_id]
            assert page["items"][0]["nodes"][s.node.node_id]["ready"] is True

            added = {"host": "127.0.0.1", "port": extra.port, "ready_timeout": 2.0}
            status, body = await call(s.http, "POST", "/v1/upstreams", added)
            assert status == 201
            assert body["id"] == extra_id
            status, _ = await call(s.http, "POST", "/v1/upstreams", added)
            assert status == 409
            await eventually(lambda: len(s.node.pool.balancer_members()) == 2)

            status, body = await call(s.http, "POST", f"/v1/upstreams/{original_id}/drain")
            assert status == 200
            assert body["mode"] == "draining"
            assert s.node.pool.links[original_id].state is Health.DRAINING
            before = len(s.recorder.data)
            for number in range(6):
                await s.first.round_trip(f"d{number}\n".encode(), reply=f"d{number}".encode())
            assert len(s.recorder.data) == before  # a draining upstream gets nothing new
            assert extra_recorder.data == [f"d{n}".encode() for n in range(6)]

            status, _ = await call(s.http, "DELETE", f"/v1/upstreams/{original_id}")
            assert status == 204
            await eventually(lambda: original_id not in s.node.pool.links)
            status, page = await call(s.http, "GET", "/v1/upstreams")
            assert [item["id"] for item in page["items"]] == [extra_id]
            status, body = await call(s.http, "DELETE", f"/v1/upstreams/{original_id}")
            assert status == 404
            assert body["error"]["code"] == "not_found"
            await s.second.round_trip(b"after\n", reply=b"after")
        finally:
            await extra.stop(0)


async def test_bad_requests_and_unknown_sockets() -> None:
    async with setup() as s:
        first, _ = s.uuids
        status, body = await call(
            s.http, "POST", f"/v1/sockets/{first}/send", data=b'{"text": "unterminated'
        )
        assert status == 400
        assert body["error"]["code"] == "bad_json"
        status, body = await call(s.http, "POST", "/v1/broadcast", data=b"[1, 2")
        assert status == 400
        stranger = str(uuidlib.uuid4())
        for method, path, payload in [
            ("GET", f"/v1/sockets/{stranger}", None),
            ("POST", f"/v1/sockets/{stranger}/send", {"text": "hi"}),
            ("POST", f"/v1/sockets/{stranger}/pause", None),
            ("PUT", f"/v1/sockets/{stranger}/labels", {"a": "b"}),
            ("DELETE", f"/v1/sockets/{stranger}", None),
        ]:
            status, body = await call(s.http, method, path, payload)
            assert status == 404, (method, path)
            assert body["error"]["code"] == "not_found"
        status, body = await call(s.http, "GET", f"/v1/sockets/{first.upper()}")
        assert status == 400  # only the canonical lowercase form names a socket
        await s.first.round_trip(b"still fine")


async def test_probes_and_metrics() -> None:
    async with setup() as s:
        await s.first.round_trip(b"count me")
        status, body = await call(s.http, "GET", "/readyz")
        assert status == 200
        assert body["ready"] is True
        assert body["upstreams_ready"] == 1
        status, _ = await call(s.http, "GET", "/livez")
        assert status == 200
        async with s.http.get("/metrics") as answer:
            assert answer.status == 200
            text = await answer.text()
        assert "paradoxplex_sockets 2.0" in text
        assert "paradoxplex_messages_in_total 1.0" in text
        assert 'paradoxplex_upstream_state{state="ready",upstream="' in text
        status, _ = await call(s.http, "GET", "/openapi.json")
        assert status == 200


async def test_a_scrape_right_after_start_shows_every_drop_and_refusal_reason_at_zero() -> None:
    async with (
        running_node(wait_ready=False) as node,
        aiohttp.ClientSession(node.admin_url) as http,
        http.get("/metrics") as answer,
    ):
        assert answer.status == 200
        text = await answer.text()
    counted = {
        (family.name, found.labels["reason"]): found.value
        for family in text_string_to_metric_families(text)
        if family.name in ("paradoxplex_drops", "paradoxplex_sockets_refused")
        for found in family.samples
        if found.name.endswith("_total")
    }
    assert counted == {
        **{("paradoxplex_drops", reason.value): 0.0 for reason in DropReason},
        **{("paradoxplex_sockets_refused", refusal.value): 0.0 for refusal in Refusal},
    }


async def test_readyz_is_503_without_an_upstream_in_rotation() -> None:
    async with (
        running_node(wait_ready=False) as node,
        aiohttp.ClientSession(node.admin_url) as http,
    ):
        status, body = await call(http, "GET", "/readyz")
        assert (status, body["ready"], body["upstreams_ready"]) == (503, False, 0)
        assert body["listening"] is True
