"""Every edge secured at once, as processes: ``upstream-echo`` serving mTLS, a node behind a
PROXY v2 header with TLS to its clients, https for its admin API and mTLS to the upstream;
a real SIGHUP renews the listener's certificate while a socket stays open."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import signal
import ssl
import struct
from pathlib import Path

import pytest

from paradoxplex.node.cli.healthcheck import admin_target, target_of
from paradoxplex.shared.proxy import V2_SIGNATURE
from tests.conftest import delete_prefix
from tests.support.client import Client
from tests.support.eventually import eventually
from tests.support.fleet import NODE_LINE as FLEET_NODE_LINE
from tests.support.fleet import Proc, children_of, pid_gone, stop_all
from tests.support.ports import free_range
from tests.support.processes import ECHO_LINE, NODE_LINE, Running, executable, run, start
from tests.support.tls import Authority, Issued, file_fingerprint

pytestmark = pytest.mark.e2e

HEADER = (
    V2_SIGNATURE
    + bytes([0x21, 0x11])  # v2 PROXY, INET over STREAM
    + struct.pack("!H", 12)
    + ipaddress.ip_address("198.51.100.20").packed
    + ipaddress.ip_address("10.0.0.1").packed
    + struct.pack("!HH", 61000, 7999)
)


def copy_to(source: Issued, target: Issued) -> None:
    target.cert.write_bytes(source.cert.read_bytes())
    target.key.write_bytes(source.key.read_bytes())


async def new_handshake_presents(port: int, context: ssl.SSLContext, wanted: str) -> bool:
    client = await Client.connect(port, header=HEADER, ssl=context)
    try:
        return client.peer_fingerprint == wanted
    finally:
        await client.aclose()


def start_echo(authority: Authority, nodes_ca: Authority) -> tuple[Running, int]:
    issued = authority.issue("echo")
    echo, ready = start(
        "upstream-echo", "--listen", "127.0.0.1:0",
        "--tls-cert", str(issued.cert), "--tls-key", str(issued.key),
        "--tls-client-ca", str(nodes_ca.ca),
        ready=ECHO_LINE,
    )  # fmt: skip
    return echo, int(ready["port"])


async def test_every_edge_secured_and_a_sighup_renewal(tmp_path: Path) -> None:
    authority, nodes_ca = Authority(tmp_path), Authority(tmp_path, "nodes ca")
    first, renewed = authority.issue("node one"), authority.issue("node two")
    live = Issued(tmp_path / "live.crt", tmp_path / "live.key")
    copy_to(first, live)
    admin_cert, node_client = authority.issue("admin"), nodes_ca.issue("node client")
    echo, echo_port = start_echo(authority, nodes_ca)
    with echo:
        node, ready = start(
            "node", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
            "--upstream", f"127.0.0.1:{echo_port}", "--drain-grace", "0",
            "--proxy-protocol", "--tls-cert", str(live.cert), "--tls-key", str(live.key),
            "--admin-tls-cert", str(admin_cert.cert), "--admin-tls-key", str(admin_cert.key),
            "--upstream-tls", "--upstream-tls-ca", str(authority.ca),
            "--upstream-tls-cert", str(node_client.cert),
            "--upstream-tls-key", str(node_client.key),
            ready=NODE_LINE,
        )  # fmt: skip
        with node:
            port, admin = int(ready["port"]), ready["admin"]
            assert admin.startswith("https://")
            context = authority.client_context()
            old = await Client.connect(port, header=HEADER, ssl=context)
            try:
                await old.round_trip(
                    b"through every edge", within=10
                )  # echoed by the mTLS upstream
                assert old.peer_fingerprint == file_fingerprint(first.cert)
                listed = run(
                    "admin", "--url", admin, "--ca", str(authority.ca), "sockets", "--json"
                )
                assert listed.returncode == 0, listed.stderr
                [item] = json.loads(listed.stdout)["items"]
                assert item["remote"] == "198.51.100.20:61000"

                copy_to(renewed, live)
                node.process.send_signal(signal.SIGHUP)
                wanted = file_fingerprint(renewed.cert)
                await eventually(
                    lambda: new_handshake_presents(port, context, wanted),
                    timeout=10,
                    message="a new handshake presents the renewed certificate",
                )
                await old.round_trip(b"the open socket goes on", within=10)
                assert old.peer_fingerprint == file_fingerprint(first.cert)
            finally:
                await old.aclose()
            assert node.terminate() == 0, node.log()
            assert "TLS certificate reloaded" in node.log()


def test_a_bad_certificate_file_at_start_is_one_line_naming_the_flag(tmp_path: Path) -> None:
    issued = Authority(tmp_path).issue("node")
    done = run(
        "node", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
        "--tls-cert", str(tmp_path / "absent.crt"), "--tls-key", str(issued.key),
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.startswith("paradoxplex: --tls-cert: cannot read ")
    assert done.stderr.count("\n") == 1


def test_node_check_loads_the_tls_files(tmp_path: Path) -> None:
    authority = Authority(tmp_path)
    good, other = authority.issue("node"), authority.issue("other")
    done = run(
        "node", "--check", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
        "--tls-cert", str(good.cert), "--tls-key", str(other.key),
        "--admin-tls-cert", str(good.cert), "--admin-tls-key", str(good.key),
        "--upstream-tls-ca", str(authority.ca),
    )  # fmt: skip
    assert done.returncode == 1
    assert "problem: --tls-cert: --tls-key: " in done.stderr
    assert "does not match --tls-cert" in done.stderr
    assert "ok: --admin-tls-cert" in done.stdout
    assert "ok: --upstream-tls-ca/cert" in done.stdout


@pytest.mark.parametrize(
    ("argv", "env", "url"),
    [
        (["paradoxplex", "node"], {}, "http://127.0.0.1:8000"),
        (["paradoxplex", "node", "--admin-tls-cert", "c.pem"], {}, "https://127.0.0.1:8000"),
        (["paradoxplex", "node"], {"PARADOXPLEX_ADMIN_TLS_CERT": "c"}, "https://127.0.0.1:8000"),
    ],
)
def test_health_probes_an_admin_api_with_tls_over_https(
    argv: list[str], env: dict[str, str], url: str
) -> None:
    assert target_of(argv, env).url == url
    assert admin_target("https://0.0.0.0:9/").url == "https://127.0.0.1:9"
    assert admin_target("127.0.0.1:9").url == "http://127.0.0.1:9"


async def test_sighup_to_a_workers_parent_reloads_every_worker(
    tmp_path: Path, redis_url: str, key_prefix: str
) -> None:
    issued = Authority(tmp_path).issue("node")
    admin_base = free_range(2)
    parent = Proc(
        "tls-workers",
        [
            executable(), "node", "--workers", "2", "--redis", redis_url,
            "--key-prefix", key_prefix, "--node-id", "tw", "--listen", "127.0.0.1:0",
            "--admin", f"127.0.0.1:{admin_base}", "--drain-grace", "0",
            "--tls-cert", str(issued.cert), "--tls-key", str(issued.key),
        ],
    )  # fmt: skip
    children: list[int] = []
    try:
        await parent.wait_line(FLEET_NODE_LINE, count=2)
        children = children_of(parent.pid)
        parent.signal(signal.SIGHUP)
        await eventually(
            lambda: parent.stderr().count(b"TLS certificate reloaded") == 2,
            timeout=10,
            message="both workers reloaded",
        )
        assert parent.popen.poll() is None
        parent.signal(signal.SIGTERM)
        assert await parent.wait_exit(timeout=15) == 0, parent.tail()
        await eventually(lambda: all(map(pid_gone, children)), message="workers exited")
    finally:
        stop_all([parent])
        for pid in children:  # workers this test started (through their parent), by pid
            if not pid_gone(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        await delete_prefix(redis_url, key_prefix)
