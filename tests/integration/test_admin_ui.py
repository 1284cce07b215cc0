"""The dashboard's files over real HTTP: content types, caching, CSP, and the token rules."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from paradoxplex.admin import ui
from paradoxplex.admin.app import build_app
from tests.support.admin_control import FakeControl

TOKEN = "ui-token"


@pytest.fixture
async def base_url() -> AsyncIterator[str]:
    runner = web.AppRunner(build_app(FakeControl(), token=TOKEN), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.mark.parametrize(
    ("path", "content_type", "starts"),
    [
        ("/ui/", "text/html", b"<!doctype html>"),
        ("/ui/index.html", "text/html", b"<!doctype html>"),
        ("/ui/app.js", "text/javascript", b"// paradoxplex"),
        ("/ui/app.css", "text/css", b"/* paradoxplex"),
        ("/ui/icon.svg", "image/svg+xml", b"<svg"),
    ],
)
async def test_the_files_need_no_token_and_carry_strict_headers(
    base_url: str, http: aiohttp.ClientSession, path: str, content_type: str, starts: bytes
) -> None:
    async with http.get(base_url + path) as answer:
        body = await answer.read()
        assert answer.status == 200
        assert answer.content_type == content_type
        headers = answer.headers
    assert body.startswith(starts)
    assert headers["Content-Security-Policy"] == ui.CSP
    assert "script-src 'self'" in ui.CSP
    assert "unsafe-inline" not in ui.CSP
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Cache-Control"] == "no-cache"
    assert headers["ETag"].startswith('"')


async def test_an_unchanged_file_answers_304(base_url: str, http: aiohttp.ClientSession) -> None:
    async with http.get(base_url + "/ui/app.js") as first:
        etag = first.headers["ETag"]
    for sent in (etag, f"W/{etag}", f'"other", {etag}'):
        async with http.get(base_url + "/ui/app.js", headers={"If-None-Match": sent}) as again:
            assert again.status == 304
            assert await again.read() == b""
            assert again.headers["ETag"] == etag
    async with http.get(base_url + "/ui/app.js", headers={"If-None-Match": '"old"'}) as changed:
        assert changed.status == 200


async def test_ui_redirects_to_the_page(base_url: str, http: aiohttp.ClientSession) -> None:
    async with http.get(base_url + "/ui", allow_redirects=False) as answer:
        assert answer.status == 308
        assert answer.headers["Location"] == "ui/"


@pytest.mark.parametrize("path", ["/ui/missing.js", "/ui/../v1/nodes", "/v1/nodes"])
async def test_everything_else_still_needs_the_token(
    base_url: str, http: aiohttp.ClientSession, path: str
) -> None:
    async with http.get(base_url + path) as answer:
        assert answer.status == 401


async def test_an_unknown_file_is_404_with_the_token(
    base_url: str, http: aiohttp.ClientSession
) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with http.get(base_url + "/ui/secret.py", headers=headers) as answer:
        assert answer.status == 404


def test_the_page_loads_only_its_own_files() -> None:
    page = ui.Dashboard().assets[ui.INDEX].body.decode()
    for inline in ("<script>", "style=", "<style", "http://", "https://"):
        assert inline not in page
    for name in ("app.js", "app.css", "icon.svg"):
        assert f'"{name}"' in page


def test_repr() -> None:
    assert repr(ui.Dashboard()).startswith("<Dashboard files=4 bytes=")
