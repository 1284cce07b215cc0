"""The dashboard at ``/ui/`` in a real chromium, against two real nodes, Redis and an echo.

Each test opens its own raw TCP clients and its own browser context (its own sessionStorage),
signs in with the token and checks what the page shows against what the sockets see.
"""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import orjson
import pytest
from playwright.sync_api import Locator, Page, Route, expect

from tests.browser.conftest import (
    ARTIFACTS,
    PHONE,
    TOKEN,
    NodeProcess,
    OpenTab,
    Tab,
    UiFleet,
    start_node,
)
from tests.support import processes
from tests.support.redis_server import RedisServer

# slow as a whole: its fleet and chromium take ~4 s to start, and two tests 3-12 s each
pytestmark = [pytest.mark.browser, pytest.mark.slow]

APPEARS_WITHIN_MS = 2000


def sign_in(tab: Tab, node: NodeProcess, token: str = TOKEN) -> Page:
    page = tab.page
    page.goto(node.admin_url + "/ui/")
    page.fill("#token", token)
    page.click("#login-form button[type=submit]")
    return page


def signed_in(tab: Tab, node: NodeProcess, *, nodes: int = 2) -> Page:
    """Signed in, and the first poll has shown every node."""
    page = sign_in(tab, node)
    expect(page.locator("#dash")).to_be_visible()
    expect(page.locator("#nodes tbody tr")).to_have_count(nodes, timeout=10_000)
    return page


def socket_row(page: Page, remote: str) -> Locator:
    return page.locator("#sockets tbody tr", has_text=remote)


def cell(row: Locator, label: str) -> Locator:
    return row.locator(f'td[data-label="{label}"]')


def receive(client: socket.socket, wanted: bytes, *, timeout: float = 5.0) -> bytes:
    """Read until ``wanted`` arrived (or the peer closed, or time ran out): all read."""
    received = b""
    deadline = time.monotonic() + timeout
    while wanted not in received and time.monotonic() < deadline:
        client.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = client.recv(65536)
        except TimeoutError:
            break
        if not chunk:
            break
        received += chunk
    return received


def closed_by_peer(client: socket.socket, *, timeout: float = 5.0) -> bool:
    """True when the other side closed the connection within ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        client.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            if client.recv(65536) == b"":
                return True
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True
    return False


def upstream_state(page: Page, upstream: str, node_id: str) -> Locator:
    row = page.locator("#upstreams tbody tr", has_text=upstream).filter(has_text=node_id)
    return cell(row, "state")


def test_the_fleet_view_shows_both_nodes_and_the_upstream(
    ui_fleet: UiFleet, open_tab: OpenTab
) -> None:
    tab = open_tab()
    page = signed_in(tab, ui_fleet.a)
    clients = [ui_fleet.connect(node) for node in (ui_fleet.a, ui_fleet.b, ui_fleet.b)]
    for index, (_, remote) in enumerate(clients):
        row = socket_row(page, remote)
        expect(row).to_be_visible()
        uuid = row.get_attribute("data-key")
        ui_fleet.a.api("PUT", f"/v1/sockets/{uuid}/labels", {"site": ("lyon", "oslo")[index % 2]})
        expect(cell(row, "labels")).not_to_be_empty()

    incarnations = {
        item["id"]: item["incarnation"] for item in ui_fleet.a.api("GET", "/v1/nodes")["items"]
    }
    for node in (ui_fleet.a, ui_fleet.b):
        row = page.locator("#nodes tbody tr", has_text=node.node_id)
        expect(cell(row, "state")).to_have_text("up")
        started = cell(row, "started")
        expect(started).to_have_attribute("title", f"incarnation {incarnations[node.node_id]}")
        expect(started).to_have_text(re.compile(r"^\d+(\.\d)? (s|min)$"))
        expect(cell(row, "listener")).to_have_text(f"{node.listen[0]}:{node.listen[1]}")
        expect(upstream_state(page, ui_fleet.upstream, node.node_id)).to_have_text("in rotation")
    expect(page.locator("#nodes tbody tr", has_text="ui-a")).to_contain_text("(this page)")
    expect(page.locator("#t-nodes")).to_have_text("2")

    # some seconds of traffic, paced: the page measures rates and draws them
    for _ in range(40):
        for client, _ in clients:
            client.sendall(b"ping\n")
        page.wait_for_timeout(150)
    expect(page.locator("#t-in")).not_to_have_text("—")
    assert page.locator("#t-in").inner_text() != "0.0"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "dashboard-fleet.png", full_page=True)
    assert tab.errors == []


def test_a_socket_opened_on_b_appears_on_a_without_a_reload(
    ui_fleet: UiFleet, open_tab: OpenTab
) -> None:
    tab = open_tab()
    page = signed_in(tab, ui_fleet.a)
    page.evaluate("window.sameDocument = true")

    started = time.monotonic()
    _, remote = ui_fleet.connect(ui_fleet.b)
    row = socket_row(page, remote)
    expect(row).to_be_visible(timeout=APPEARS_WITHIN_MS)
    took = time.monotonic() - started
    print(f"\na socket opened on ui-b showed on ui-a's page after {took:.2f} s")

    expect(cell(row, "node")).to_have_text("ui-b")
    expect(cell(row, "state")).to_have_text("active")
    assert page.evaluate("window.sameDocument") is True
    assert tab.errors == []


def test_send_text_from_the_page(ui_fleet: UiFleet, open_tab: OpenTab) -> None:
    client, remote = ui_fleet.connect(ui_fleet.b)
    tab = open_tab()
    page = signed_in(tab, ui_fleet.a)
    row = socket_row(page, remote)
    row.get_by_role("button", name="Send").click()
    page.fill("#act-input", "hello from the dashboard")
    page.click("#act-ok")
    expect(page.locator("#act")).to_be_hidden()
    assert b"hello from the dashboard" in receive(client, b"hello from the dashboard")
    assert tab.errors == []


def test_pause_and_resume_from_the_page(ui_fleet: UiFleet, open_tab: OpenTab) -> None:
    _, remote = ui_fleet.connect(ui_fleet.b)
    tab = open_tab()
    page = signed_in(tab, ui_fleet.a)
    row = socket_row(page, remote)

    row.get_by_role("button", name="Pause").click()
    expect(cell(row, "state")).to_have_text("paused")
    uuid = row.get_attribute("data-key")
    assert ui_fleet.b.api("GET", f"/v1/sockets/{uuid}")["state"] == "paused"

    row.get_by_role("button", name="Resume").click()
    expect(cell(row, "state")).to_have_text("active")
    assert ui_fleet.b.api("GET", f"/v1/sockets/{uuid}")["state"] == "active"
    assert tab.errors == []


def test_edit_labels_from_the_page(ui_fleet: UiFleet, open_tab: OpenTab) -> None:
    _, remote = ui_fleet.connect(ui_fleet.b)
    tab = open_tab()
    page = signed_in(tab, ui_fleet.a)
    row = socket_row(page, remote)
    row.get_by_role("button", name="Labels").click()
    page.fill("#act-input", "site=lyon, rack=7")
    page.click("#act-ok")
    expect(cell(row, "labels").locator(".label")).to_have_text(["rack=7", "site=lyon"])
    uuid = row.get_attribute("data-key")
    assert ui_fleet.a.api("GET", f"/v1/sockets/{uuid}")["labels"] == {"site": "lyon", "rack": "7"}

    page.fill("#f-label", "rack=7")
    page.press("#f-label", "Enter")
    expect(page.locator("#sockets tbody tr")).to_have_count(1)
    assert tab.errors == []


def test_close_from_the_page(ui_fleet: UiFleet, open_tab: OpenTab) -> None:
    client, remote = ui_fleet.connect(ui_fleet.b)
    tab = open_tab()
    page = signed_in(tab, ui_fleet.a)
    row = socket_row(page, remote)
    row.get_by_role("button", name="Close").click()
    expect(page.locator("#act-ok")).to_have_text("Close socket")
    page.click("#act-ok")
    assert closed_by_peer(client), "the node did not close the socket"
    expect(row).to_have_count(0)
    assert tab.errors == []


def test_an_action_whose_answer_is_lost_is_retried_with_its_key_and_acts_once(
    ui_fleet: UiFleet, open_tab: OpenTab
) -> None:
    client, remote = ui_fleet.connect(ui_fleet.b)
    tab = open_tab()
    page = signed_in(tab, ui_fleet.a)
    keys: list[str] = []

    def lose_the_first_answer(route: Route) -> None:
        keys.append(route.request.headers.get("idempotency-key", ""))
        answer = route.fetch()  # the node acts
        if len(keys) > 1:
            route.fulfill(response=answer)
            return
        lost = {"code": "owner_timeout", "message": "lost on the way", "outcome": "unknown"}
        body = orjson.dumps({"error": lost})
        route.fulfill(status=504, content_type="application/json", body=body)

    page.route("**/v1/sockets/*/send", lose_the_first_answer)
    for text in ("<once>", "<next>"):
        socket_row(page, remote).get_by_role("button", name="Send").click()
        page.fill("#act-input", text)
        page.click("#act-ok")
        expect(page.locator("#act")).to_be_hidden()
    received = receive(client, b"<next>")
    assert received.count(b"<once>") == 1, received
    first, retried, second = keys
    assert first == retried != second, "one key per action, the same for its retry"
    assert len(first) == 32
    lost = "Failed to load resource: the server responded with a status of 504 (Gateway Timeout)"
    assert tab.errors == [lost], "the one 504, nothing else"


def test_broadcast_from_the_page(ui_fleet: UiFleet, open_tab: OpenTab) -> None:
    on_a, _ = ui_fleet.connect(ui_fleet.a)
    on_b, remote_b = ui_fleet.connect(ui_fleet.b)
    tab = open_tab()
    page = signed_in(tab, ui_fleet.a)
    expect(socket_row(page, remote_b)).to_be_visible()
    page.select_option("#b-target", "all")
    page.fill("#b-text", "to every socket")
    page.click("#broadcast button[type=submit]")
    expect(page.locator("#toast")).to_contain_text("broadcast sent")
    for client in (on_a, on_b):
        assert b"to every socket" in receive(client, b"to every socket")
    assert tab.errors == []


def test_a_wrong_token_says_so(ui_fleet: UiFleet, open_tab: OpenTab) -> None:
    tab = open_tab()
    page = sign_in(tab, ui_fleet.a, "not-the-token")
    error = page.locator("#login-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("refused this token (401 unauthorized)")
    expect(page.locator("#dash")).to_be_hidden()
    assert page.evaluate("sessionStorage.length") == 0
    # the browser itself reports the refused request; nothing else may reach the console
    assert all("401" in text for text in tab.errors), tab.errors


def test_the_token_stays_in_the_tab_and_out_of_urls(ui_fleet: UiFleet, open_tab: OpenTab) -> None:
    tab = open_tab()
    requests: list[tuple[str, str | None]] = []
    tab.page.on("request", lambda r: requests.append((r.url, r.headers.get("authorization"))))
    page = signed_in(tab, ui_fleet.a)
    expect(page.locator("#upstreams tbody tr")).to_have_count(2)

    assert page.evaluate("sessionStorage.getItem('paradoxplex.admin.token')") == TOKEN
    assert page.evaluate("localStorage.length") == 0
    assert page.context.cookies() == []
    assert all(TOKEN not in url for url, _ in requests)
    api_calls = [auth for url, auth in requests if "/v1/" in url]
    assert api_calls
    assert set(api_calls) == {f"Bearer {TOKEN}"}

    other = open_tab()  # another tab (its own session) asks again
    other.page.goto(ui_fleet.a.admin_url + "/ui/")
    expect(other.page.locator("#login")).to_be_visible()
    assert tab.errors == other.errors == []


def test_a_phone_width_screen(ui_fleet: UiFleet, open_tab: OpenTab) -> None:
    _, remote = ui_fleet.connect(ui_fleet.b)
    tab = open_tab(viewport=PHONE)
    page = signed_in(tab, ui_fleet.a)
    row = socket_row(page, remote)
    expect(row).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    row.get_by_role("button", name="Pause").click()
    expect(cell(row, "state")).to_have_text("paused")
    ARTIFACTS.mkdir(exist_ok=True)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=ARTIFACTS / "dashboard-phone.png")
    assert tab.errors == []


def test_the_page_shows_when_its_node_lost_redis(open_tab: OpenTab) -> None:
    redis = RedisServer().start()
    started: list[processes.Running] = []
    try:
        echo, line = processes.start(
            "upstream-echo", "--listen", "127.0.0.1:0", ready=processes.ECHO_LINE
        )
        started.append(echo)
        node = start_node(redis.url, "pxtest:ui-lost", "ui-lone", f"{line['host']}:{line['port']}")
        started.append(node.running)
        tab = open_tab()
        page = signed_in(tab, node, nodes=1)
        banner = page.locator("#banner")
        expect(banner).to_be_hidden()

        redis.kill()
        expect(banner).to_contain_text("Node ui-lone has lost Redis", timeout=10_000)
    finally:
        for running in started:
            running.close()
        redis.close()


def test_a_node_taken_over_shows_its_handoff(open_tab: OpenTab, tmp_path: Path) -> None:
    """The process column: how the node's process came to be; after a hot handoff, from which
    process, how many sockets moved and the pause, without a reload."""
    redis = RedisServer().start()
    started: list[processes.Running] = []
    client: socket.socket | None = None
    try:
        echo, line = processes.start(
            "upstream-echo", "--listen", "127.0.0.1:0", ready=processes.ECHO_LINE
        )
        started.append(echo)
        upstream = f"{line['host']}:{line['port']}"
        path = str(tmp_path / "handoff.sock")
        old = start_node(
            redis.url, "pxtest:ui-handoff", "ui-up", upstream, "--handoff-socket", path
        )
        started.append(old.running)
        page = signed_in(open_tab(), old, nodes=1)
        process = cell(page.locator("#nodes tbody tr", has_text="ui-up"), "process")
        expect(process).to_contain_text("started")
        client = old.connect()
        client.sendall(b"before\n")
        assert receive(client, b"before\n") == b"before\n"
        new = start_node(redis.url, "pxtest:ui-handoff", "ui-up", upstream, "--take-over", path)
        started.append(new.running)
        expect(process).to_contain_text("took over", timeout=10_000)
        expect(process).to_contain_text("1 moved, pause")
        assert process.get_attribute("title") == f"took over from pid {old.running.process.pid}"
        client.sendall(b"after\n")
        assert receive(client, b"after\n") == b"after\n"
    finally:
        if client is not None:
            client.close()
        for running in started:
            running.close()
        redis.close()
