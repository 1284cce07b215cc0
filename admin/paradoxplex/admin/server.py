"""``AdminServer``: the admin app served on one address, from start to close.

Rules:
- A request aiohttp cannot parse (a 10 kB URL, a NUL in a header, not HTTP) never reaches
  the app; the server answers it in the API's error shape (400 ``bad_request``) with one
  WARNING line, where aiohttp would answer plain text and log an ERROR with a traceback.
- No access log (aiohttp's is off); the app logs one DEBUG line per request.
- ``start`` listens on an address or on an inherited listening socket (a hot handoff's);
  ``pause`` stops listening and ends connections after their request in flight, and
  ``start(sock=...)`` listens again; ``close`` ends everything.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from ssl import SSLContext
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from paradoxplex.admin.answers import error_response, unexpected
from paradoxplex.admin.errors import ApiError, code_for_status, to_api_error

log = logging.getLogger("paradoxplex.admin")


class _AdminRequestHandler(RequestHandler):
    """aiohttp's connection handler, answering what never reaches the app in the API's shape.

    aiohttp has no hook for the answer to a request its parser refused (aio-libs/aiohttp#3287):
    ``handle_error`` is the one place such a request meets code, so it is overridden here.
    """

    __slots__ = ()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        error = to_api_error(exc) if exc is not None else None
        if error is None and status >= 500:
            error = unexpected(request, exc)
        elif error is None:
            error = ApiError(status, code_for_status(status), "bad request")
        if error.status < 500:
            log.warning(
                "admin: refused a malformed request from %s: %s (%s)",
                request.remote,
                error.message,
                type(exc).__name__,
            )
        if request.writer.output_size > 0:  # an answer has begun: only closing is left
            raise ConnectionError("cannot answer an error after a response has started")
        response = error_response(error)
        response.force_close()
        return response


class AdminServer:
    """Serves the admin app on one address; malformed HTTP is answered in the API's error shape
    with one log line (see ``_AdminRequestHandler``).

    Public aiohttp API only: ``web.AppRunner`` runs the app (setup, shutdown, cleanup) and its
    ``server`` property is the low-level server that ties a connection to the app; each
    connection's protocol is our ``RequestHandler`` subclass, made by the factory given to
    ``loop.create_server`` (aiohttp's ``TCPSite`` would make aiohttp's own).
    """

    __slots__ = ("_handler_options", "_listening", "_runner")

    def __init__(self, app: web.Application) -> None:
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        self._handler_options: dict[str, Any] = {"access_log": None}
        self._listening: asyncio.Server | None = None

    def __repr__(self) -> str:
        return f"<AdminServer address={self.address}>"

    @property
    def address(self) -> tuple[str, int] | None:
        """(host, port) actually bound (the port when asked for 0), or None before start."""
        if self._listening is None or not self._listening.sockets:
            return None
        host, port = self._listening.sockets[0].getsockname()[:2]
        return host, port

    async def start(
        self,
        host: str,
        port: int,
        ssl: SSLContext | None = None,
        *,
        sock: socket.socket | None = None,
    ) -> tuple[str, int]:
        """Set the app up and listen (on ``sock`` when given: an inherited listening socket,
        a hot handoff's); the (host, port) bound. OSError when the address is taken."""
        if self._runner.server is None:
            await self._runner.setup()
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert server is not None  # set by setup()

        def connection() -> RequestHandler:
            return _AdminRequestHandler(server, loop=loop, **self._handler_options)

        if sock is not None:
            self._listening = await loop.create_server(connection, sock=sock, ssl=ssl)
        else:
            self._listening = await loop.create_server(
                connection, host, port, ssl=ssl, reuse_address=True
            )
        address = self.address
        assert address is not None
        return address

    def listening_socket(self) -> socket.socket | None:
        """A duplicate of the listening socket (the caller closes it), or None."""
        if self._listening is None or not self._listening.sockets:
            return None
        return socket.socket(fileno=os.dup(self._listening.sockets[0].fileno()))

    async def pause(self, *, grace: float) -> None:
        """Stop listening and end every connection once its request in flight is answered
        (at most ``grace`` seconds); ``start(sock=...)`` listens again."""
        if self._listening is not None:
            self._listening.close()
            self._listening = None
        server = self._runner.server
        if server is not None:
            await server.shutdown(grace)

    async def close(self) -> None:
        """Stop listening, end open connections (after the requests in flight), clean up."""
        if self._listening is not None:
            self._listening.close()
        await self._runner.cleanup()
        if self._listening is not None:
            await self._listening.wait_closed()
            self._listening = None
