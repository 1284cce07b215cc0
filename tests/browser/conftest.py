"""A real browser against a real fleet: Debian's chromium driven by Playwright (sync API).

- ``browser``: chromium at ``/usr/bin/chromium`` (``PARADOXPLEX_TEST_CHROMIUM`` overrides),
  launched once per module. Missing, the test fails and says what to install; it never skips
  and never downloads a browser (``make test`` installs Debian's package when run as root).
- ``ui_fleet``: one ``upstream-echo`` and two ``paradoxplex node`` processes (``ui-a`` and
  ``ui-b``) with an admin token, on the session's redis-server, once per module.
- ``Tab``: a page in a fresh browser context (its own sessionStorage) that records every
  console error and uncaught exception.
"""

from __future__ import annotations

import contextlib
import os
import socket
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Error, Page, sync_playwright
from redis import Redis

from tests.support import processes
from tests.support.redis_server import RedisServer

CHROMIUM = Path(os.environ.get("PARADOXPLEX_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
INSTALL_HINT = (
    f"the browser tests drive Debian's chromium at {CHROMIUM}, which is missing: "
    "`apt-get update && apt-get install -y chromium` (`make test` does it when run as root), "
    "or point PARADOXPLEX_TEST_CHROMIUM at a chromium binary"
)
TOKEN = "ui-test-token"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(INSTALL_HINT)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@dataclass
class NodeProcess:
    node_id: str
    listen: tuple[str, int]
    admin_url: str
    running: processes.Running

    def api(self, method: str, path: str, body: Any = None) -> Any:
        """Call this node's admin API with the token; the decoded answer (None for 204)."""
        data = None if body is None else orjson.dumps(body)
        request = urllib.request.Request(self.admin_url + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {TOKEN}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=5) as answer:
            raw = answer.read()
        return orjson.loads(raw) if raw else None

    def connect(self) -> socket.socket:
        """A raw TCP client of this node's listener."""
        return socket.create_connection(self.listen, timeout=5)


@dataclass
class UiFleet:
    a: NodeProcess
    b: NodeProcess
    upstream: str
    sockets: list[socket.socket] = field(default_factory=list)

    def connect(self, node: NodeProcess) -> tuple[socket.socket, str]:
        """A raw client of ``node`` and its address as the fleet lists it (``remote``)."""
        client = node.connect()
        self.sockets.append(client)
        host, port = client.getsockname()[:2]
        return client, f"{host}:{port}"


def node_args(redis_url: str, prefix: str, node_id: str, upstream: str) -> list[str]:
    return [
        "node",
        "--redis", redis_url, "--key-prefix", prefix, "--node-id", node_id,
        "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--admin-token", TOKEN,
        "--upstream", upstream, "--heartbeat", "0.5", "--node-ttl", "3", "--drain-grace", "0",
    ]  # fmt: skip


def start_node(
    redis_url: str, prefix: str, node_id: str, upstream: str, *extra: str
) -> NodeProcess:
    args = [*node_args(redis_url, prefix, node_id, upstream), *extra]
    running, line = processes.start(*args, ready=processes.NODE_LINE)
    return NodeProcess(node_id, (line["listen"], int(line["port"])), line["admin"], running)


def delete_keys(url: str, prefix: str) -> None:
    client = Redis.from_url(url)
    try:
        doomed = list(client.scan_iter(match=f"{prefix}:*", count=500))
        if doomed:
            client.delete(*doomed)
    finally:
        client.close()


@pytest.fixture(scope="module")
def ui_fleet(redis_server: RedisServer) -> Iterator[UiFleet]:
    prefix = f"pxtest:ui:{os.getpid()}:{os.urandom(4).hex()}"
    started: list[processes.Running] = []
    fleet: UiFleet | None = None
    try:
        echo, line = processes.start(
            "upstream-echo", "--listen", "127.0.0.1:0", ready=processes.ECHO_LINE
        )
        started.append(echo)
        upstream = f"{line['host']}:{line['port']}"
        a = start_node(redis_server.url, prefix, "ui-a", upstream)
        started.append(a.running)
        b = start_node(redis_server.url, prefix, "ui-b", upstream)
        started.append(b.running)
        fleet = UiFleet(a, b, upstream)
        yield fleet
    finally:
        for client in fleet.sockets if fleet else ():
            client.close()
        for running in started:
            running.close()
        delete_keys(redis_server.url, prefix)


@dataclass
class Tab:
    """One page of its own browser context; ``errors`` collects console errors."""

    page: Page
    errors: list[str] = field(default_factory=list)

    @classmethod
    def open(cls, browser: Browser, *, viewport: dict[str, int] = DESKTOP) -> Tab:
        context = browser.new_context(viewport=viewport)  # type: ignore[arg-type]
        tab = cls(context.new_page())
        tab.page.on("console", tab._console)
        tab.page.on("pageerror", lambda error: tab.errors.append(f"uncaught: {error}"))
        return tab

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def close(self) -> None:
        with contextlib.suppress(Error):
            self.page.context.close()


OpenTab = Callable[..., Tab]


@pytest.fixture
def open_tab(browser: Browser) -> Iterator[OpenTab]:
    """``open_tab(viewport=...)``: a new ``Tab``, closed after the test."""
    opened: list[Tab] = []

    def open_one(*, viewport: dict[str, int] = DESKTOP) -> Tab:
        opened.append(Tab.open(browser, viewport=viewport))
        return opened[-1]

    try:
        yield open_one
    finally:
        for tab in opened:
            tab.close()
