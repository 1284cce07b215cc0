"""``paradoxplex node`` and ``paradoxplex upstream-echo`` as processes, as a user runs them."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import pytest

from tests.support.processes import ECHO_LINE, NODE_LINE, run, start

pytestmark = pytest.mark.e2e

SOCKET_TIMEOUT = 10.0


@pytest.fixture
def echo_port() -> Iterator[int]:
    echo, ready = start("upstream-echo", "--listen", "127.0.0.1:0", ready=ECHO_LINE)
    with echo:
        yield int(ready["port"])


def receive_exactly(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def receive_to_end(conn: socket.socket) -> bytes:
    data = b""
    try:
        while chunk := conn.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


@pytest.mark.slow
def test_a_node_process_serves_lists_and_stops_on_sigterm(echo_port: int) -> None:
    node, ready = start(
        "node",
        "--listen", "127.0.0.1:0",
        "--admin", "127.0.0.1:0",
        "--upstream", f"127.0.0.1:{echo_port}",
        "--node-id", "e2e-node",
        "--drain-grace", "1",
        ready=NODE_LINE,
    )  # fmt: skip
    with node:
        assert ready["id"] == "e2e-node"
        port, admin = int(ready["port"]), ready["admin"]
        with socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT) as conn:
            conn.sendall(b"hello from a real client")
            assert receive_exactly(conn, 24) == b"hello from a real client"

            listed = run("admin", "--url", admin, "sockets", "--json")
            assert listed.returncode == 0, listed.stderr
            page = json.loads(listed.stdout)
            assert len(page["items"]) == 1
            item = page["items"][0]
            assert item["node"] == "e2e-node"
            assert item["remote"] == f"127.0.0.1:{conn.getsockname()[1]}"
            assert item["bytes_in"] == 24

            started = time.monotonic()
            assert node.terminate(timeout=10.0) == 0, node.log()
            elapsed = time.monotonic() - started
            assert elapsed < 5.0, f"SIGTERM took {elapsed:.1f} s"
            assert receive_to_end(conn) == b""  # the node closed the socket
        assert "Traceback" not in node.log()


@pytest.mark.parametrize(
    ("flags", "setting"),
    [
        (["--framing", "bogus"], "--framing"),
        (["--listen", "nonsense"], "--listen"),
        (["--admin", "0.0.0.0:0"], "--admin-token"),
    ],
    ids=["framing", "listen", "admin-without-token"],
)
def test_a_bad_setting_exits_2_with_one_line_naming_it(flags: list[str], setting: str) -> None:
    done = run("node", "--listen", "127.0.0.1:0", *flags, timeout=20.0)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert setting in lines[0]
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
