"""The live fleet dashboard, ``GET /ui/``: static HTML, CSS and JavaScript shipped in this package.

Rules:
- No build step, no CDN: the files beside this module are served as they are, read once when
  the app is built. Only the names in ``ASSETS`` are served; nothing is looked up on disk per
  request, so no path can escape the folder.
- The page and its files need no token (they hold no data); the page asks for the token once,
  keeps it in ``sessionStorage`` (this tab only) and sends it as ``Authorization: Bearer`` on
  every API call. It never puts the token in a URL or a cookie.
- Every answer carries a strict Content-Security-Policy (only this origin's files, no inline
  script or style, no framing), ``nosniff`` and ``no-referrer``; it is revalidated on every
  load (``no-cache`` with a strong ``ETag``, 304 when unchanged), so an upgraded node never
  serves a page with stale files.
- The page acts only through the API's own routes; what it shows is in ``/openapi.json``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from paradoxplex.admin import routes

PREFIX = routes.UI_PREFIX
INDEX = "index.html"
ASSETS: dict[str, str] = {
    INDEX: "text/html; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "icon.svg": "image/svg+xml",
}
CSP = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
HEADERS: dict[str, str] = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-cache",
}
# the dashboard's files, served without a token by name (``/ui`` and ``/ui/`` are public rows
# of the route table, and so is ``/ui/{name}``)
OPEN_PATHS = frozenset(PREFIX + name for name in ASSETS)


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    content_type: str
    etag: str

    @classmethod
    def load(cls, name: str) -> Asset:
        body = resources.files(__package__).joinpath(name).read_bytes()
        return cls(body, ASSETS[name], f'"{hashlib.sha256(body).hexdigest()[:32]}"')

    def fresh(self, if_none_match: str | None) -> bool:
        """Whether the browser's copy (``If-None-Match``) is this one: answer 304."""
        if not if_none_match:
            return False
        tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
        return "*" in tags or self.etag in tags


class Dashboard:
    """The ``/ui`` routes: the page and its files, read once."""

    def __init__(self) -> None:
        self.assets = {name: Asset.load(name) for name in ASSETS}

    def __repr__(self) -> str:
        size = sum(len(asset.body) for asset in self.assets.values())
        return f"<Dashboard files={len(self.assets)} bytes={size}>"

    def routes(self) -> list[tuple[str, str, Handler]]:
        """(method, router path, handler) for every row of ``routes.DASHBOARD``."""
        return [
            (row.method, row.router_path, getattr(self, row.handler)) for row in routes.DASHBOARD
        ]

    async def ui_redirect(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPPermanentRedirect("ui/")  # relative: works behind a path prefix too

    async def ui(self, request: web.Request) -> web.StreamResponse:
        return self.answer(request, INDEX)

    async def ui_file(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in self.assets:
            raise web.HTTPNotFound()
        return self.answer(request, name)

    def answer(self, request: web.Request, name: str) -> web.Response:
        asset = self.assets[name]
        headers = {**HEADERS, hdrs.ETAG: asset.etag}
        if asset.fresh(request.headers.get(hdrs.IF_NONE_MATCH)):
            return web.Response(status=304, headers=headers)
        return web.Response(
            body=asset.body, headers={**headers, hdrs.CONTENT_TYPE: asset.content_type}
        )
