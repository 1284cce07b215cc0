"""TLS at a real node's edges, with certificates the tests make: the listener (TLS, client
certificates, reload without dropping sockets, bad files), and the admin API over https with
the admin CLI's ``--ca`` and ``paradoxplex health``."""

from __future__ import annotations

import asyncio
import logging
import ssl
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest

from paradoxplex.node.fleet.memory import memory_backend
from paradoxplex.node.node import Node
from paradoxplex.shared.errors import ConfigError
from tests.support.client import Client
from tests.support.eventually import eventually
from tests.support.node_harness import (
    Recorder,
    listen_port,
    node_config,
    running_node,
    start_upstream,
)
from tests.support.tls import Authority, Issued, file_fingerprint


@asynccontextmanager
async def tls_node(**overrides: Any) -> AsyncIterator[tuple[Node, Recorder]]:
    server, recorder = await start_upstream()
    try:
        async with running_node(server.port, **overrides) as node:
            yield node, recorder
    finally:
        await server.stop(0)


def listener_files(issued: Issued) -> dict[str, str]:
    return {"tls_cert": str(issued.cert), "tls_key": str(issued.key)}


async def test_a_tls_client_round_trip_through_the_node(tmp_path: Path) -> None:
    authority = Authority(tmp_path)
    async with tls_node(**listener_files(authority.issue("node"))) as (node, recorder):
        client = await Client.connect(node, ssl=authority.client_context())
        try:
            await client.round_trip(b"over tls")
        finally:
            await client.aclose()
        assert recorder.data == [b"over tls"]


async def test_a_tls_client_that_closes_leaves_at_once_without_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    authority = Authority(tmp_path)
    async with tls_node(**listener_files(authority.issue("node"))) as (node, _):
        with caplog.at_level(logging.WARNING):
            client = await Client.connect(node, ssl=authority.client_context())
            await client.round_trip(b"bye")
            await client.aclose()
            await eventually(lambda: node.sessions == {}, timeout=2, message="socket gone")
        assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_a_plain_client_of_a_tls_listener_is_never_a_socket(tmp_path: Path) -> None:
    authority = Authority(tmp_path)
    async with tls_node(**listener_files(authority.issue("node"))) as (node, recorder):
        reader, writer = await asyncio.open_connection("127.0.0.1", listen_port(node))
        writer.write(b"plain text\r\n\r\n")
        async with asyncio.timeout(5):
            await reader.read()  # the node ends the failed handshake
        writer.close()
        assert node.sessions == {}
        assert recorder.messages == []


async def test_client_certificates_are_required_with_a_client_ca(tmp_path: Path) -> None:
    authority = Authority(tmp_path)
    clients_ca = Authority(tmp_path, "clients ca")
    overrides = listener_files(authority.issue("node")) | {"tls_client_ca": str(clients_ca.ca)}
    async with tls_node(**overrides) as (node, recorder):
        context = authority.client_context()
        context.load_cert_chain(*_pair(clients_ca.issue("device")))
        client = await Client.connect(node, ssl=context)
        try:
            await client.round_trip(b"with a certificate")
        finally:
            await client.aclose()
        for refused in (authority.client_context(), _with(authority, authority.issue("other"))):
            with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
                await refused_round_trip(node, refused)
        assert recorder.data == [b"with a certificate"]
        assert node.sessions == {}


async def refused_round_trip(node: Node, context: ssl.SSLContext) -> None:
    """Connect and round-trip; with TLS 1.3 the server's refusal shows at the first read."""
    stranger = await Client.connect(node, ssl=context)
    try:
        await stranger.round_trip(b"without one")
    finally:
        await stranger.aclose()


def _pair(issued: Issued) -> tuple[Path, Path]:
    return issued.cert, issued.key


def _with(authority: Authority, issued: Issued) -> ssl.SSLContext:
    """A client presenting a certificate the node's client CA did not sign."""
    return authority.client_context(issued)


def copy_to(source: Issued, target: Issued) -> Issued:
    """Put ``source``'s certificate and key in ``target``'s files (a renewal, say)."""
    target.cert.write_bytes(source.cert.read_bytes())
    target.key.write_bytes(source.key.read_bytes())
    return target


async def test_a_reload_keeps_open_sockets_and_new_handshakes_see_the_new_certificate(
    tmp_path: Path,
) -> None:
    authority = Authority(tmp_path)
    first, second = authority.issue("node one"), authority.issue("node two")
    live = copy_to(first, Issued(tmp_path / "live.crt", tmp_path / "live.key"))
    async with tls_node(**listener_files(live)) as (node, _):
        old = await Client.connect(node, ssl=authority.client_context())
        try:
            await old.round_trip(b"before")
            assert old.peer_fingerprint == file_fingerprint(first.cert)
            copy_to(second, live)
            node.reload_certificates()
            new = await Client.connect(node, ssl=authority.client_context())
            try:
                assert new.peer_fingerprint == file_fingerprint(second.cert)
                await new.round_trip(b"new")
            finally:
                await new.aclose()
            await old.round_trip(b"after, on the same socket")
            assert old.peer_fingerprint == file_fingerprint(first.cert)
        finally:
            await old.aclose()


async def test_a_bad_file_at_reload_is_logged_and_the_old_certificate_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    authority = Authority(tmp_path)
    first, other = authority.issue("node"), authority.issue("other")
    live = copy_to(first, Issued(tmp_path / "live.crt", tmp_path / "live.key"))
    async with tls_node(**listener_files(live)) as (node, _):
        live.key.write_bytes(other.key.read_bytes())  # a key of another certificate
        with caplog.at_level(logging.ERROR, logger="paradoxplex.node.tls"):
            node.reload_certificates()
        assert "TLS reload failed, keeping the current certificate" in caplog.text
        assert "--tls-key" in caplog.text
        client = await Client.connect(node, ssl=authority.client_context())
        try:
            assert client.peer_fingerprint == file_fingerprint(first.cert)
            await client.round_trip(b"still served")
        finally:
            await client.aclose()


@pytest.mark.parametrize(
    ("spoil", "flag", "reason"),
    [
        ("missing cert", "--tls-cert", "cannot read"),
        ("garbage key", "--tls-key", "is not PEM"),
        ("mismatched key", "--tls-key", "does not match --tls-cert"),
        ("missing client ca", "--tls-client-ca", "cannot read"),
        ("missing admin cert", "--admin-tls-cert", "cannot read"),
        ("missing upstream ca", "--upstream-tls-ca", "cannot read"),
    ],
)
def test_a_bad_file_at_start_is_a_config_error_naming_its_flag(
    tmp_path: Path, spoil: str, flag: str, reason: str
) -> None:
    authority = Authority(tmp_path)
    good, other = authority.issue("node"), authority.issue("other")
    settings: dict[str, Any] = {
        "tls_cert": str(good.cert),
        "tls_key": str(good.key),
        "admin_tls_cert": str(good.cert),
        "admin_tls_key": str(good.key),
    }
    missing = str(tmp_path / "absent.pem")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key")
    settings.update(
        {
            "missing cert": {"tls_cert": missing},
            "garbage key": {"tls_key": str(garbage)},
            "mismatched key": {"tls_key": str(other.key)},
            "missing client ca": {"tls_client_ca": missing},
            "missing admin cert": {"admin_tls_cert": missing},
            "missing upstream ca": {"upstream_tls_ca": missing},
        }[spoil]
    )
    with pytest.raises(ConfigError) as caught:
        Node(node_config((), **settings), memory_backend())
    assert caught.value.key == flag
    assert reason in caught.value.reason
    assert "\n" not in str(caught.value)


# the admin API over https ------------------------------------------------------------------


async def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "paradoxplex.node.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    async with asyncio.timeout(30):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.mark.slow
async def test_the_admin_api_over_https_with_the_clis_ca(tmp_path: Path) -> None:
    authority = Authority(tmp_path)
    issued = authority.issue("admin")
    overrides = {"admin_tls_cert": str(issued.cert), "admin_tls_key": str(issued.key)}
    async with tls_node(**overrides) as (node, _):
        assert node.admin_url.startswith("https://127.0.0.1:")
        url = ["--url", node.admin_url]
        code, out, err = await run_cli("admin", *url, "--ca", str(authority.ca), "--json", "nodes")
        assert code == 0, err
        [record] = orjson.loads(out)["items"]
        assert record["admin_url"] == node.admin_url
        code, _, err = await run_cli("admin", *url, "nodes")  # the system's CAs do not know it
        assert code == 1
        assert err.startswith("error: unreachable: ")
        assert "TLS handshake failed" in err
        code, out, err = await run_cli("health", "--admin", node.admin_url)
        assert (code, out.strip()) == (0, f"healthy: admin {node.admin_url.split('//')[1]}"), err
        code, _, err = await run_cli("health", "--admin", node.admin_url, "--ca", str(authority.ca))
        assert code == 0, err
