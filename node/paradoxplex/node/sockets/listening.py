"""The node's listening ends: the listener's server and the admin API's, as they start, pause,
move to another process (a hot handoff) and close.

Rules:
- Startup: the listener binds ``--listen`` first, then the admin API ``--admin``; a bind that
  fails is a ``ConfigError`` naming the setting (``naming``). Where each listens goes into
  ``NodeState`` (``listen_address``, ``admin_url``: a wildcard host becomes one other hosts
  can reach, ``reachable_host``).
- Both sides of a hot handoff see these ends as their ``Serving``: the old side takes
  duplicates of the listening sockets (``listening_sockets``), stops accepting
  (``stop_listening``: admin requests under way get ``admin_grace`` seconds) and, on a thaw,
  listens again on them (``listen_again``); the new side says where it listens from the
  inherited sockets (``addresses``) before it serves on them (``serve``).
- A drain stops accepting (``stop_accepting``); the listening sockets close last
  (``close_admin``, ``close_listener``).
- SIGHUP loads the listener's and the admin API's certificates again
  (``reload_certificates``): new handshakes use them, open sockets keep theirs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Callable, Iterator

from aiohttp import web

from paradoxplex.admin.server import AdminServer
from paradoxplex.node.sockets.listener import Listener
from paradoxplex.node.state import NodeState
from paradoxplex.node.tls import ServerTls
from paradoxplex.shared.config import Address
from paradoxplex.shared.errors import ConfigError

#: The admin app of a node, given whether its listener accepts.
AdminApp = Callable[[Callable[[], bool]], web.Application]


class ListeningEnds:
    """The listener's server and the admin API's (see the module's rules)."""

    def __init__(
        self,
        listener: Listener,
        *,
        state: NodeState,
        listen: Address,
        admin: Address,
        tls: ServerTls | None,
        admin_tls: ServerTls | None,
        admin_app: AdminApp,
        admin_grace: float,
    ) -> None:
        self.listener = listener
        self.state = state
        self.listen = listen
        self.admin = admin
        self.tls = tls
        self.admin_tls = admin_tls
        self.admin_app = admin_app
        self.admin_grace = admin_grace
        self._server: asyncio.Server | None = None
        self._admin: AdminServer | None = None

    @property
    def listening(self) -> bool:
        return self._server is not None and self._server.is_serving()

    async def start(self, *, reuse_port: bool) -> None:
        """Listen on ``--listen``, then serve the admin API on ``--admin``."""
        with naming("--listen", self.listen):
            self._server = await self.listener.start(self.listen, reuse_port=reuse_port)
        bound = self._server.sockets[0].getsockname()
        self.state.listen_address = f"{self.listen.host}:{bound[1]}"
        await self._start_admin()

    def stop_accepting(self) -> None:
        if self._server is not None:
            self._server.close()

    async def close_admin(self) -> None:
        if self._admin is not None:
            await self._admin.close()

    async def close_listener(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def reload_certificates(self) -> None:
        """Load the listener's and the admin API's certificates again (new handshakes use
        them; open sockets keep theirs; a bad file is logged and the old one kept)."""
        for tls in (self.tls, self.admin_tls):
            if tls is not None:
                tls.reload()

    # both sides' Serving ----------------------------------------------------------------

    def listening_sockets(self) -> tuple[socket.socket | None, socket.socket | None]:
        listener = None
        if self._server is not None and self._server.sockets:
            listener = socket.socket(fileno=os.dup(self._server.sockets[0].fileno()))
        admin = self._admin.listening_socket() if self._admin is not None else None
        return listener, admin

    async def stop_listening(self) -> None:
        if self._server is not None:
            self._server.close()
        if self._admin is not None:
            await self._admin.pause(grace=self.admin_grace)

    async def listen_again(
        self, listener: socket.socket | None, admin: socket.socket | None
    ) -> None:
        await self.serve(listener, admin)

    def addresses(self, listener: socket.socket, admin: socket.socket | None) -> None:
        self.state.listen_address = f"{self.listen.host}:{listener.getsockname()[1]}"
        if admin is not None:
            scheme = "https" if self.admin_tls else "http"
            host = reachable_host(self.admin.host)
            self.state.admin_url = f"{scheme}://{host}:{admin.getsockname()[1]}"

    async def serve(self, listener: socket.socket | None, admin: socket.socket | None) -> None:
        if listener is not None:
            self._server = await self.listener.adopt(listener)
        if admin is not None:
            if self._admin is None:
                await self._start_admin(sock=admin)
            else:
                tls = self.admin_tls.context if self.admin_tls else None
                await self._admin.start(self.admin.host, self.admin.port, tls, sock=admin)

    async def _start_admin(self, *, sock: socket.socket | None = None) -> None:
        # whether the listener accepts, asked of whichever server listens now (a thaw serves
        # on a new one)
        self._admin = AdminServer(self.admin_app(lambda: self.listening))
        with naming("--admin", self.admin):
            _, port = await self._admin.start(  # the bound port, when asked for port 0
                self.admin.host,
                self.admin.port,
                self.admin_tls.context if self.admin_tls else None,
                sock=sock,
            )
        scheme = "https" if self.admin_tls else "http"
        self.state.admin_url = f"{scheme}://{reachable_host(self.admin.host)}:{port}"

    def __repr__(self) -> str:
        return (
            f"<ListeningEnds {self.state.listen_address or '-'} admin "
            f"{self.state.admin_url or '-'} listening={self.listening}>"
        )


@contextlib.contextmanager
def naming(flag: str, address: Address) -> Iterator[None]:
    """Turn an OSError of binding ``address`` into a ConfigError naming the setting."""
    try:
        yield
    except OSError as error:
        reason = os.strerror(error.errno) if error.errno else str(error)
        reason = reason.lower()
        raise ConfigError(flag, f"cannot listen on {address}: {reason}") from None


def reachable_host(host: str) -> str:
    """An address other hosts can reach for a listener bound to ``host``: a wildcard
    becomes this machine's address (its host name's, else loopback)."""
    if host not in ("0.0.0.0", "::", ""):
        return host
    try:
        found = socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"
    return found
