"""The downstream listener: plain TCP or TLS, with or without a PROXY protocol header.

Rules:
- Without ``--proxy-protocol`` each accepted socket is a ``Session`` at once (over TLS: once
  the handshake is done; a failed handshake never becomes a session).
- With it, each socket first gets a ``HeaderPhase``: a buffered protocol whose read buffer is
  exactly what ``ProxyHeaderReader.need()`` allows, so not one byte past the header is read
  here. Then the socket becomes a ``Session`` whose remote address is the header's source
  (or the connection's, for a LOCAL/UNKNOWN header); over TLS the handshake starts only then
  (``loop.start_tls``): the header comes before the TLS handshake, in clear.
- A malformed header, none within ``header_timeout`` seconds, or a socket that ends in the
  middle of one closes the socket, counted as ``paradoxplex_bad_input_total{kind=
  "proxy_header"}`` and logged at DEBUG (a client's fault). A socket closed before sending a
  byte (a load balancer's TCP health check) is not counted. The header never reaches a
  session, so never an upstream.
- TLS handshakes are bounded by ``HANDSHAKE_TIMEOUT`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Callable
from typing import cast

from paradoxplex.node.metrics import Metrics
from paradoxplex.node.sockets.session import Session
from paradoxplex.shared.config import Address
from paradoxplex.shared.errors import BadProxyHeader
from paradoxplex.shared.proxy import DEFAULT_HEADER_TIMEOUT, ProxyHeader, ProxyHeaderReader

log = logging.getLogger("paradoxplex.node.sockets")

HANDSHAKE_TIMEOUT = 10.0
#: Connections the kernel may hold completed but not yet accepted. A reconnect storm fills a
#: short queue while the loop is busy, and the kernel then drops SYNs (the client retries
#: after 1 s). Linux caps it at ``net.core.somaxconn`` (4096 by default since 5.4).
BACKLOG = 65535


class Listener:
    """Makes the protocol for each accepted socket (see the module's rules)."""

    def __init__(
        self,
        new_session: Callable[[], Session],
        *,
        metrics: Metrics,
        tls: ssl.SSLContext | None = None,
        proxy_protocol: bool = False,
        header_timeout: float = DEFAULT_HEADER_TIMEOUT,
    ) -> None:
        self.new_session = new_session
        self.metrics = metrics
        self.tls = tls
        self.proxy_protocol = proxy_protocol
        self.header_timeout = header_timeout
        self.handshaking: set[asyncio.Task[None]] = set()

    async def start(self, address: Address, *, reuse_port: bool) -> asyncio.Server:
        loop = asyncio.get_running_loop()
        direct_tls = None if self.proxy_protocol else self.tls
        return await loop.create_server(
            self._protocol,
            address.host,
            address.port,
            reuse_port=reuse_port or None,
            backlog=BACKLOG,
            ssl=direct_tls,
            ssl_handshake_timeout=HANDSHAKE_TIMEOUT if direct_tls else None,
        )

    async def adopt(self, sock: socket.socket, *, serving: bool = True) -> asyncio.Server:
        """Serve on an inherited listening socket (a hot handoff's); ``serving`` False: not
        yet (``start_serving()`` later)."""
        loop = asyncio.get_running_loop()
        direct_tls = None if self.proxy_protocol else self.tls
        return await loop.create_server(
            self._protocol,
            sock=sock,
            backlog=BACKLOG,
            ssl=direct_tls,
            ssl_handshake_timeout=HANDSHAKE_TIMEOUT if direct_tls else None,
            start_serving=serving,
        )

    def _protocol(self) -> asyncio.BaseProtocol:
        return HeaderPhase(self) if self.proxy_protocol else self.new_session()

    def refused(self, reason: str) -> None:
        self.metrics.bad_input.labels("proxy_header").inc()
        log.debug("socket closed: %s", reason)

    def hand_over(self, transport: asyncio.Transport, header: ProxyHeader) -> None:
        """The header is read: the socket becomes a session (after a TLS handshake)."""
        session = self.new_session()
        session.peer = header.remote or ""
        if self.tls is None:
            transport.set_protocol(session)
            session.connection_made(transport)
            return
        transport.pause_reading()
        task = asyncio.ensure_future(self._handshake(transport, session, self.tls))
        self.handshaking.add(task)
        task.add_done_callback(self.handshaking.discard)

    async def _handshake(
        self, transport: asyncio.Transport, session: Session, context: ssl.SSLContext
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            secured = await loop.start_tls(
                transport,
                session,
                context,
                server_side=True,
                ssl_handshake_timeout=HANDSHAKE_TIMEOUT,
            )
        except Exception as error:  # a task boundary: the client's handshake failed
            log.debug("TLS handshake after the PROXY header failed: %r", error)
            transport.abort()
            return
        if secured is None:  # the transport closed meanwhile
            return
        session.connection_made(secured)

    def __repr__(self) -> str:
        mode = ("tls " if self.tls else "") + ("proxy" if self.proxy_protocol else "plain")
        return f"<Listener {mode} handshaking={len(self.handshaking)}>"


class HeaderPhase(asyncio.BufferedProtocol):
    """Reads the PROXY header of one socket, exactly, then hands the socket over."""

    __slots__ = ("_buffer", "_got_bytes", "_timer", "listener", "reader", "transport")

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.reader = ProxyHeaderReader()
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._got_bytes = False
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self.listener.header_timeout, self._late)

    def get_buffer(self, sizehint: int) -> bytearray:
        self._buffer = bytearray(max(1, self.reader.need()))
        return self._buffer

    def buffer_updated(self, nbytes: int) -> None:
        self._got_bytes = True
        try:
            header = self.reader.feed(bytes(self._buffer[:nbytes]))
        except BadProxyHeader as error:
            self._refuse(str(error))
            return
        if header is None or self.transport is None:
            return
        self._stop_timer()
        transport, self.transport = self.transport, None
        self.listener.hand_over(transport, header)

    def eof_received(self) -> bool:
        if self._got_bytes:
            self._refuse("bad PROXY protocol header: the client closed in the middle of it")
        else:
            self._close()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()
        self.transport = None

    def _late(self) -> None:
        self._timer = None
        self._refuse(f"no PROXY protocol header within {self.listener.header_timeout:g}s")

    def _refuse(self, reason: str) -> None:
        if self.transport is None:
            return
        self.listener.refused(reason)
        self._close()

    def _close(self) -> None:
        self._stop_timer()
        if self.transport is not None:
            transport, self.transport = self.transport, None
            transport.abort()

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def __repr__(self) -> str:
        return f"<HeaderPhase {self.reader!r}>"


async def stop_handshakes(listener: Listener) -> None:
    """Cancel the TLS handshakes still running after a PROXY header (at shutdown)."""
    for task in list(listener.handshaking):
        task.cancel()
    for task in list(listener.handshaking):
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
