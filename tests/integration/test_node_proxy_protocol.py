"""``--proxy-protocol``: a real node behind a (test-made) load balancer's PROXY header, v1 and
v2, plain and under TLS: the remote address seen everywhere is the header's, the header never
reaches an upstream, and a missing, malformed or late header closes the socket, counted."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from paradoxplex.node.node import Node
from paradoxplex.shared.proxy import V2_SIGNATURE
from tests.support.client import Client
from tests.support.eventually import eventually
from tests.support.node_harness import Recorder, listen_port, running_node, sample
from tests.support.node_harness import start_upstream as start_echo
from tests.support.tls import Authority

V1 = b"PROXY TCP4 203.0.113.7 198.51.100.1 4242 7999\r\n"
V2 = (
    V2_SIGNATURE
    + bytes([0x21, 0x21])  # v2 PROXY, INET6 over STREAM
    + struct.pack("!H", 36 + 7)
    + ipaddress.ip_address("2001:db8::7").packed
    + ipaddress.ip_address("2001:db8::1").packed
    + struct.pack("!HH", 5151, 7999)
    + b"\x04\x00\x04vpce"  # a TLV, skipped
)
V2_LOCAL = V2_SIGNATURE + bytes([0x20, 0x00, 0, 0])
BAD_HEADERS = "paradoxplex_bad_input_total"


@asynccontextmanager
async def proxied_node(**overrides: Any) -> AsyncIterator[tuple[Node, Recorder]]:
    server, recorder = await start_echo()
    try:
        async with running_node(
            server.port, proxy_protocol=True, lifecycle_events=True, **overrides
        ) as node:
            yield node, recorder
    finally:
        await server.stop(0)


def remote_of_only_socket(node: Node) -> str:
    [session] = node.sessions.values()
    assert session.info is not None
    return session.info.remote


async def admin_remotes(node: Node) -> list[str]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{node.admin_url}/v1/sockets") as answer,
    ):
        body = await answer.json()
    return [item["remote"] for item in body["items"]]


@pytest.mark.parametrize(
    ("header", "remote"),
    [(V1, "203.0.113.7:4242"), (V2, "2001:db8::7:5151")],
    ids=["v1", "v2"],
)
async def test_the_headers_source_is_the_remote_address_everywhere(
    header: bytes, remote: str
) -> None:
    async with proxied_node() as (node, recorder):
        client = await Client.connect(node)
        try:
            await client.send(header)
            await client.round_trip(b"hello through a balancer")
            assert remote_of_only_socket(node) == remote
            assert await admin_remotes(node) == [remote]
            await eventually(lambda: len(recorder.events) == 1, message="a connected event")
            assert recorder.events[0].remote_address == remote
        finally:
            await client.aclose()
        await eventually(lambda: len(recorder.events) == 2, message="a disconnected event")
        assert recorder.events[1].remote_address == remote
        assert recorder.data == [b"hello through a balancer"]  # the header never went up
        assert sample(node, BAD_HEADERS, kind="proxy_header") == 0


async def test_header_and_first_data_in_one_segment_are_told_apart() -> None:
    async with proxied_node() as (node, recorder):
        client = await Client.connect(node)
        try:
            await client.send(V1 + b"ping")
            assert await client.receive_exactly(4) == b"ping"
            assert recorder.data == [b"ping"]
        finally:
            await client.aclose()


async def test_a_local_header_keeps_the_connections_own_address() -> None:
    async with proxied_node() as (node, _):
        client = await Client.connect(node)
        try:
            await client.send(V2_LOCAL)
            await client.round_trip(b"health")
            assert remote_of_only_socket(node) == client.remote_as_node_sees_it
        finally:
            await client.aclose()


@pytest.mark.parametrize(
    "first_bytes",
    [
        b"hello without a header\n",
        b"PROXY TCP4 203.0.113.7 not-an-address 1 2\r\n",
        V2_SIGNATURE + bytes([0x31, 0x11, 0, 12]) + bytes(12),  # version 3
        b"PROXY " + b"x" * 200,
    ],
    ids=["missing", "malformed v1", "bad v2 version", "too long"],
)
async def test_a_missing_or_malformed_header_closes_the_socket_and_is_counted(
    first_bytes: bytes,
) -> None:
    async with proxied_node() as (node, recorder):
        client = await Client.connect(node)
        try:
            await client.send(first_bytes)
            assert await client.closed_by_peer() == b""
        finally:
            await client.aclose()
        assert sample(node, BAD_HEADERS, kind="proxy_header") == 1
        assert node.sessions == {}
        assert recorder.messages == []


async def test_no_header_within_the_deadline_closes_the_socket_and_is_counted() -> None:
    async with proxied_node(proxy_header_timeout=0.3) as (node, recorder):
        client = await Client.connect(node)
        try:
            await client.send(b"PROXY TCP4 ")  # and nothing more
            assert await client.closed_by_peer(within=3.0) == b""
        finally:
            await client.aclose()
        assert sample(node, BAD_HEADERS, kind="proxy_header") == 1
        assert recorder.messages == []


async def test_a_connection_closed_before_any_byte_is_not_counted() -> None:
    async with proxied_node() as (node, _):
        _, writer = await asyncio.open_connection("127.0.0.1", listen_port(node))
        writer.close()
        await writer.wait_closed()
        client = await Client.connect(node)  # a later one is served as usual
        try:
            await client.send(V1)
            await client.round_trip(b"after a health check")
        finally:
            await client.aclose()
        assert sample(node, BAD_HEADERS, kind="proxy_header") == 0


async def test_under_tls_the_header_comes_first_then_the_handshake(tmp_path: Path) -> None:
    authority = Authority(tmp_path)
    server_cert = authority.issue("node")
    overrides = {"tls_cert": str(server_cert.cert), "tls_key": str(server_cert.key)}
    async with proxied_node(**overrides) as (node, recorder):
        reader, writer = await asyncio.open_connection("127.0.0.1", listen_port(node))
        try:
            writer.write(V1)
            await writer.drain()
            await writer.start_tls(authority.client_context())
            writer.write(b"secret")
            await writer.drain()
            async with asyncio.timeout(5):
                assert await reader.readexactly(6) == b"secret"
            assert remote_of_only_socket(node) == "203.0.113.7:4242"
            assert recorder.data == [b"secret"]
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


def v1_from(host: str, port: int) -> bytes:
    return b"PROXY TCP4 %s 198.51.100.1 %d 7999\r\n" % (host.encode(), port)


async def test_per_source_limits_count_the_headers_client_not_the_balancer() -> None:
    """Behind a balancer every connection comes from its address: a per-IP limit must count
    the client each PROXY header names."""
    async with proxied_node(max_connections_per_ip=1) as (node, _):
        clients = [await Client.connect(node) for _ in range(3)]
        try:
            await clients[0].send(v1_from("203.0.113.1", 1001))
            await clients[0].round_trip(b"first client")
            await clients[1].send(v1_from("203.0.113.2", 1002))  # another client: served
            await clients[1].round_trip(b"second client")
            await clients[2].send(v1_from("203.0.113.1", 1003))  # the first one again
            await clients[2].closed_by_peer()
            assert sample(node, "paradoxplex_sockets_refused_total", reason="per_ip") == 1
            assert len(node.sessions) == 2
        finally:
            for client in clients:
                await client.aclose()
