"""``paradoxplex admin …`` against a real admin app served from a thread on 127.0.0.1:0."""

from __future__ import annotations

import argparse
import asyncio
import io
import threading
from collections.abc import Iterator

import orjson
import pytest
from aiohttp import web

from paradoxplex.admin import cli
from paradoxplex.admin.app import build_app
from paradoxplex.admin.cli import add_admin_parser, main, run_admin
from paradoxplex.shared.retry import RetryPolicy
from paradoxplex.shared.sessions import BroadcastTarget, SessionState
from tests.support.admin_control import FAR, NODE, S1, S2, S3, FakeControl
from tests.support.ports import free_port

TOKEN = "cli-token"


class ThreadServer:
    """The admin app on its own event loop in a thread, so the CLI can ``asyncio.run``."""

    def __init__(self, control: FakeControl, token: str | None) -> None:
        self.control = control
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.runner = web.AppRunner(build_app(control, token=token), access_log=None)
        self.url = ""

    def __repr__(self) -> str:
        return f"<ThreadServer {self.url or 'stopped'}>"

    async def _start(self) -> str:
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        host, port = self.runner.addresses[0][:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        self.thread.start()
        self.url = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def _serve(token: str | None) -> Iterator[ThreadServer]:
    server = ThreadServer(FakeControl(), token)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def server() -> Iterator[ThreadServer]:
    yield from _serve(None)


@pytest.fixture
def secured() -> Iterator[ThreadServer]:
    yield from _serve(TOKEN)


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PARADOXPLEX_ADMIN_URL", raising=False)
    monkeypatch.delenv("PARADOXPLEX_ADMIN_TOKEN", raising=False)
    monkeypatch.setattr(cli, "ACTION_RETRY", RetryPolicy(first=0.01, cap=0.02, attempts=3))


def admin(url: str, *argv: str) -> int:
    """Parse like the ``paradoxplex`` console script does, then run."""
    parser = argparse.ArgumentParser(prog="paradoxplex")
    add_admin_parser(parser.add_subparsers(dest="command", required=True))
    return run_admin(parser.parse_args(["admin", "--url", url, *argv]))


def output(capsys: pytest.CaptureFixture[str]) -> tuple[list[str], str]:
    captured = capsys.readouterr()
    return captured.out.splitlines(), captured.err


# --- lists ----------------------------------------------------------------------------------


def test_nodes_table(server: ThreadServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert admin(server.url, "nodes") == 0
    lines, err = output(capsys)
    assert lines[0].split() == [
        "ID", "STATE", "LISTEN", "ADMIN", "STARTED", "SOCKETS", "MSGS_IN", "MSGS_OUT", "DROPS"
    ]  # fmt: skip
    assert lines[1].split() == [
        NODE, "up", "0.0.0.0:7999", "http://127.0.0.1:8000", "2024-05-01T12:00:00Z", "2",
        "40", "38", "1",
    ]  # fmt: skip
    assert lines[0].index("LISTEN") == lines[1].index("0.0.0.0:7999")
    assert err == ""


def test_nodes_json(server: ThreadServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert admin(server.url, "--json", "nodes") == 0
    lines, _ = output(capsys)
    [line] = lines
    assert orjson.loads(line)["items"][0]["id"] == NODE


def test_sockets_table_with_filters(
    server: ThreadServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert admin(server.url, "sockets", "--state", "active", "--label", "site=a") == 0
    lines, _ = output(capsys)
    assert lines[0].split() == ["UUID", "NODE", "REMOTE", "STATE", "IN", "OUT", "LABELS"]
    assert lines[1].split() == [S1, NODE, "10.0.0.1:5000", "active", "0", "0", "site=a"]
    assert len(lines) == 2


def test_sockets_page_hints_the_cursor(
    server: ThreadServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert admin(server.url, "sockets", "--limit", "1") == 0
    lines, err = output(capsys)
    assert len(lines) == 2
    assert err == "more: pass --cursor 1 (or --all)\n"
    assert admin(server.url, "--json", "sockets", "--limit", "1", "--cursor", "1") == 0
    page = orjson.loads(capsys.readouterr().out)
    assert len(page["items"]) == 1
    assert page["cursor"] == "2"


def test_sockets_all_follows_cursors(
    server: ThreadServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert admin(server.url, "sockets", "--all", "--limit", "1", "--json") == 0
    page = orjson.loads(capsys.readouterr().out)
    assert {item["uuid"] for item in page["items"]} == {S1, S2, S3, FAR}
    assert page["cursor"] is None


def test_upstreams_table(server: ThreadServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert admin(server.url, "upstreams") == 0
    lines, _ = output(capsys)
    assert lines[0].split() == [
        "ID", "MODE", "NODES", "SENT", "RECEIVED", "ERRORS", "RTT_MS", "REASON",
    ]  # fmt: skip
    assert lines[1].split(None, 7) == [
        "127.0.0.1:45888", "active", f"{NODE}=ready,far=connecting", "3", "2", "4", "0.4",
        "far: unreachable: refused",
    ]  # fmt: skip


# --- one socket -----------------------------------------------------------------------------


def test_socket_fields(server: ThreadServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert admin(server.url, "socket", S1) == 0
    lines, _ = output(capsys)
    fields = dict(line.split(None, 1) for line in lines)
    assert fields["uuid"] == S1
    assert fields["connected_at"] == "2024-05-01T12:00:00Z"
    assert fields["labels"] == "site=a"


def test_send_text_and_base64(server: ThreadServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert admin(server.url, "send", S1, "--text", "héllo") == 0
    assert admin(server.url, "send", S1, "--base64", "AAEC") == 0
    assert server.control.sent == {S1: ["héllo".encode(), b"\0\1\2"]}
    lines, _ = output(capsys)
    assert lines == [f"sent 6 bytes to {S1}", f"sent 3 bytes to {S1}"]


def test_send_stdin(
    server: ThreadServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"\xffraw\n")))
    assert admin(server.url, "--json", "send", S1, "--stdin") == 0
    assert server.control.sent == {S1: [b"\xffraw\n"]}
    assert orjson.loads(capsys.readouterr().out) == {"ok": True}


def test_pause_resume_labels_close(
    server: ThreadServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert admin(server.url, "pause", S1) == 0
    assert server.control.sessions[S1].state is SessionState.PAUSED
    assert admin(server.url, "resume", S1) == 0
    assert server.control.sessions[S1].state is SessionState.ACTIVE
    assert admin(server.url, "labels", S1, "team=x", "tier=1") == 0
    assert server.control.sessions[S1].labels == {"team": "x", "tier": "1"}
    assert admin(server.url, "labels", S1) == 0
    assert server.control.sessions[S1].labels == {}
    assert admin(server.url, "close", S1) == 0
    assert S1 not in server.control.sessions
    lines, _ = output(capsys)
    assert lines == [
        f"paused {S1}",
        f"resumed {S1}",
        f"labels of {S1}: team=x,tier=1",
        f"labels of {S1}: (none)",
        f"closed {S1}",
    ]


def test_broadcast(server: ThreadServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert admin(server.url, "broadcast", "active", "--label", "site=a", "--text", "hi") == 0
    assert server.control.asked("broadcast") == [(BroadcastTarget.ACTIVE, ("site", "a"), b"hi")]
    assert capsys.readouterr().out == (
        "broadcast to 1 matching sockets fleet-wide (1 on this node)\n"
    )
    assert admin(server.url, "--json", "broadcast", "all", "--base64", "AA==") == 0
    assert orjson.loads(capsys.readouterr().out) == {"delivered_local": 2, "matched_fleet": 4}


def test_paused_and_inactive_are_one_state(
    server: ThreadServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert admin(server.url, "--json", "sockets", "--state", "paused") == 0
    paused = orjson.loads(capsys.readouterr().out)["items"]
    assert admin(server.url, "--json", "sockets", "--state", "inactive") == 0
    assert orjson.loads(capsys.readouterr().out)["items"] == paused
    assert admin(server.url, "broadcast", "paused", "--text", "p") == 0
    assert admin(server.url, "broadcast", "inactive", "--text", "p") == 0
    assert [target for target, _, _ in server.control.asked("broadcast")] == [
        BroadcastTarget.PAUSED,
        BroadcastTarget.PAUSED,
    ]


def test_send_newline(server: ThreadServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert admin(server.url, "send", S1, "--text", "hi", "-n") == 0
    assert admin(server.url, "send", S1, "--newline", "--text", "ho") == 0
    assert server.control.sent == {S1: [b"hi\n", b"ho\n"]}


# --- upstreams and nodes --------------------------------------------------------------------


def test_upstream_add_remove_drain(
    server: ThreadServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert admin(server.url, "upstream-add", "[::1]:9000", "--ready-timeout", "2") == 0
    assert server.control.upstreams["[::1]:9000"].ready_timeout == 2.0
    fields = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines())
    assert fields["id"] == "[::1]:9000"
    assert admin(server.url, "--json", "upstream-drain", "[::1]:9000") == 0
    assert orjson.loads(capsys.readouterr().out)["mode"] == "draining"
    assert admin(server.url, "upstream-remove", "[::1]:9000") == 0
    assert "[::1]:9000" not in server.control.upstreams
    assert capsys.readouterr().out == "removed upstream [::1]:9000\n"


def test_upstream_add_over_tls_with_a_server_name(server: ThreadServer) -> None:
    argv = ["upstream-add", "10.0.0.5:443", "--tls", "--server-name", "echo.internal"]
    assert admin(server.url, *argv) == 0
    spec = server.control.upstreams["10.0.0.5:443"]
    assert (spec.tls, spec.server_name) == (True, "echo.internal")


def test_drain_node(server: ThreadServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert admin(server.url, "drain", "node-b") == 0
    assert capsys.readouterr().out.split() == [
        "id", "node-b", "draining", "yes", "at", "2024-05-01T12:00:00Z",
    ]  # fmt: skip


def test_health(server: ThreadServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert admin(server.url, "health") == 0
    assert capsys.readouterr().out.split() == ["live", "ok", "ready", "yes", "listening", "yes"]
    server.control.ready_answer = (False, {"listening": True})
    assert admin(server.url, "--json", "health") == 1
    answer = orjson.loads(capsys.readouterr().out)
    live = {"status": "ok", "node": "node-a", "incarnation": "0123456789ab"}
    assert answer == {"live": live, "ready": {"ready": False, "listening": True}}


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["socket", "nope"], "error: bad_request: uuid: "),
        (["socket", "00000000-0000-4000-8000-000000000000"], "error: not_found: no socket "),
        (["send", FAR, "--text", "x"], "error: owner_timeout: node node-silent"),
        (["upstream-add", "127.0.0.1:45888"], "error: conflict: upstream 127.0.0.1:45888"),
        (["upstream-remove", "10.0.0.9:1"], "error: not_found: no upstream 10.0.0.9:1"),
        (["sockets", "--limit", "0"], "error: bad_request: limit: "),
        (["send", S1, "--base64", "***"], "error: bad_request: base64: "),
        (["labels", S1, "novalue"], "error: bad_request: label: "),
        (["upstream-add", "no-port"], "error: bad_request: upstream: "),
    ],
)
def test_errors_are_one_line_and_exit_1(
    server: ThreadServer, capsys: pytest.CaptureFixture[str], argv: list[str], line: str
) -> None:
    assert admin(server.url, *argv) == 1
    out, err = output(capsys)
    assert out == []
    assert err.startswith(line)
    assert err.count("\n") == 1


def test_an_action_with_an_unknown_outcome_names_its_key(
    server: ThreadServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert admin(server.url, "close", FAR, "--idempotency-key", "k-7") == 1
    _, err = output(capsys)
    assert err.startswith("error: owner_timeout: node node-silent")
    assert err.count("\n") == 1
    assert "outcome unknown" in err
    assert "--idempotency-key k-7" in err
    assert [once.key for once in server.control.onces] == ["k-7"] * 3  # tried 3 times


def test_actions_send_a_fresh_key_each_and_retry_with_it(
    server: ThreadServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.control.lose_answers = 1
    assert admin(server.url, "send", S1, "--text", "x") == 0
    assert admin(server.url, "pause", S1) == 0
    first, retried, second = server.control.onces
    assert first.key == retried.key != second.key
    assert server.control.sent == {S1: [b"x"]}


def test_an_unreachable_node_is_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert admin(url, "nodes") == 1
    out, err = output(capsys)
    assert out == []
    assert err == f"error: unreachable: {url}: connection refused\n"


def test_a_host_name_that_does_not_resolve_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    assert admin("nonsense.invalid", "nodes") == 1
    _, err = output(capsys)
    assert err == (
        "error: unreachable: http://nonsense.invalid: host name 'nonsense.invalid' not found\n"
    )


def test_https_on_a_plain_http_port_says_tls(
    server: ThreadServer, capsys: pytest.CaptureFixture[str]
) -> None:
    url = server.url.replace("http://", "https://")
    assert admin(url, "nodes") == 1
    _, err = output(capsys)
    assert err == (
        f"error: unreachable: {url}: TLS handshake failed (does the admin API serve plain http://?)\n"
    )


# --- token and URL from options and environment ---------------------------------------------


def test_token_option(secured: ThreadServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert admin(secured.url, "nodes") == 1
    assert capsys.readouterr().err == (
        "error: unauthorized: missing or bad bearer token "
        "(this admin API needs a token: pass --token or set PARADOXPLEX_ADMIN_TOKEN)\n"
    )
    assert admin(secured.url, "nodes", "--token", "not-it") == 1
    assert capsys.readouterr().err == (
        "error: unauthorized: missing or bad bearer token "
        "(the token given by --token or PARADOXPLEX_ADMIN_TOKEN is not the node's --admin-token)\n"
    )
    assert admin(secured.url, "nodes", "--token", TOKEN) == 0
    assert admin(secured.url, "health") == 0


def test_url_and_token_from_environment(
    secured: ThreadServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PARADOXPLEX_ADMIN_URL", secured.url.removeprefix("http://"))
    monkeypatch.setenv("PARADOXPLEX_ADMIN_TOKEN", TOKEN)
    assert main(["--json", "nodes"]) == 0
    assert orjson.loads(capsys.readouterr().out)["items"][0]["id"] == NODE
