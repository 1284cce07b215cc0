"""A real node and an SDK upstream (``UpstreamServer``) over TLS and mTLS, with certificates
the tests make: in rotation and round trips when the CA and the client certificate are right,
out of rotation with the reason when they are not; per upstream through ``POST
/v1/upstreams`` (``tls``, ``server_name``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from paradoxplex.upstream import UpstreamServer, server_credentials
from tests.support.client import Client
from tests.support.eventually import eventually
from tests.support.node_harness import Recorder, running_node, upstream_id
from tests.support.tls import Authority, Issued


@asynccontextmanager
async def tls_upstream(
    issued: Issued, client_ca: Path | None = None
) -> AsyncIterator[tuple[UpstreamServer, Recorder]]:
    recorder = Recorder()
    server = UpstreamServer(recorder)
    credentials = server_credentials(*pem_of(issued.cert, issued.key, client_ca))
    await server.start("127.0.0.1:0", credentials=credentials)
    try:
        yield server, recorder
    finally:
        await server.stop(0)


def pem_of(cert: Path, key: Path, client_ca: Path | None) -> tuple[bytes, bytes, bytes | None]:
    return cert.read_bytes(), key.read_bytes(), client_ca.read_bytes() if client_ca else None


def node_tls(authority: Authority, client: Issued | None = None) -> dict[str, Any]:
    settings: dict[str, Any] = {"upstream_tls": True, "upstream_tls_ca": str(authority.ca)}
    if client is not None:
        settings |= {"upstream_tls_cert": str(client.cert), "upstream_tls_key": str(client.key)}
    return settings


async def test_node_to_sdk_upstream_over_tls(tmp_path: Path) -> None:
    authority = Authority(tmp_path)
    async with (
        tls_upstream(authority.issue("upstream")) as (server, recorder),
        running_node(server.port, **node_tls(authority)) as node,
        await Client.connect(node) as client,
    ):
        await client.round_trip(b"over tls to the upstream")
    assert recorder.data == [b"over tls to the upstream"]


async def test_node_to_sdk_upstream_over_mtls(tmp_path: Path) -> None:
    authority = Authority(tmp_path)
    nodes_ca = Authority(tmp_path, "nodes ca")
    node_cert = nodes_ca.issue("node")
    async with (
        tls_upstream(authority.issue("upstream"), nodes_ca.ca) as (server, recorder),
        running_node(server.port, **node_tls(authority, node_cert)) as node,
        await Client.connect(node) as client,
    ):
        await client.round_trip(b"mutual")
    assert recorder.data == [b"mutual"]


@pytest.mark.parametrize("case", ["wrong ca", "no client certificate", "plain channel"])
async def test_an_upstream_the_node_cannot_trust_or_satisfy_stays_out_of_rotation(
    tmp_path: Path, case: str
) -> None:
    authority = Authority(tmp_path)
    stranger = Authority(tmp_path, "stranger ca")
    nodes_ca = Authority(tmp_path, "nodes ca")
    settings = {
        "wrong ca": node_tls(stranger),
        "no client certificate": node_tls(authority),
        "plain channel": {},
    }[case]
    client_ca = nodes_ca.ca if case == "no client certificate" else None
    async with (
        tls_upstream(authority.issue("upstream"), client_ca) as (server, recorder),
        running_node(server.port, wait_ready=False, **settings) as node,
    ):
        link = node.pool.links[upstream_id(server.port)]
        await eventually(lambda: link.error != "", message="a reason why not")
        assert not link.in_rotation
        assert link.error.startswith("unreachable: "), link.error
        if case == "wrong ca":
            assert "TLS handshake failed" in link.error
    assert recorder.messages == []


async def test_tls_per_upstream_through_the_admin_api_with_a_server_name(
    tmp_path: Path,
) -> None:
    authority = Authority(tmp_path)
    issued = authority.issue("upstream", dns=("echo.internal",))
    body = {"host": "127.0.0.1", "tls": True, "server_name": "echo.internal"}
    async with (
        tls_upstream(issued) as (server, recorder),
        running_node(upstream_tls_ca=str(authority.ca)) as node,
        aiohttp.ClientSession() as http,
    ):
        body["port"] = server.port
        async with http.post(f"{node.admin_url}/v1/upstreams", json=body) as answer:
            assert answer.status == 201
            record = await answer.json()
        assert (record["tls"], record["server_name"]) == (True, "echo.internal")
        await eventually(lambda: node.pool.ready(), message="the TLS upstream in rotation")
        async with await Client.connect(node) as client:
            await client.round_trip(b"registered with tls")
        async with http.get(f"{node.admin_url}/v1/upstreams") as answer:
            [listed] = (await answer.json())["items"]
        assert (listed["tls"], listed["server_name"]) == (True, "echo.internal")
        drain = f"{node.admin_url}/v1/upstreams/127.0.0.1:{server.port}/drain"
        async with http.post(drain) as answer:
            drained = await answer.json()
        assert (drained["mode"], drained["tls"], drained["server_name"]) == (
            "draining",
            True,
            "echo.internal",
        )
    assert recorder.data == [b"registered with tls"]


async def test_a_server_name_the_certificate_does_not_carry_is_refused(tmp_path: Path) -> None:
    authority = Authority(tmp_path)
    async with (
        tls_upstream(authority.issue("upstream")) as (server, _),
        running_node(upstream_tls_ca=str(authority.ca)) as node,
        aiohttp.ClientSession() as http,
    ):
        body = {"host": "127.0.0.1", "port": server.port, "tls": True, "server_name": "other.x"}
        async with http.post(f"{node.admin_url}/v1/upstreams", json=body) as answer:
            assert answer.status == 201
        link = node.pool.links[upstream_id(server.port)]
        await eventually(lambda: link.error != "", message="a reason why not")
        assert not link.in_rotation
