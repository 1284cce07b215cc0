"""The one downstream client of the tests: a real TCP (or TLS) socket to a node's listener.

- ``Client.connect(target)``: ``target`` is a node of this process (anything with a
  ``listen_address``), ``HOST:PORT`` of one in another process, or a port on 127.0.0.1.
  ``ssl``: a client context (TLS); ``header``: bytes sent in clear first (a PROXY header, then
  TLS); ``rcvbuf``: a small receive buffer (a slow reader).
- It reads when asked (``receive_exactly``, ``receive_until``, ``expect``,
  ``closed_by_peer``), or, with ``collect=True`` (or from ``collect()`` on), all the time in a
  task, for tests that wait on what has arrived (``count``, ``tokens``, ``eof``). Either way
  ``received`` holds every byte read so far; what ``receive_*`` returned is not returned
  again.
- ``round_trip(data, reply=...)``: send, and wait for the reply (``data`` by default). On a
  client that reads when asked, the reply must be the very next bytes. On a collecting one,
  where other traffic may come in between (broadcasts, replies from other nodes), it must
  arrive once more than it had before.
- Every wait has a deadline (``within``, 5 s by default). Close it: ``aclose()`` or ``async
  with``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl as tls
import time
from collections.abc import Iterable
from types import TracebackType
from typing import Protocol

from tests.support.tls import fingerprint

READ_TIMEOUT = 5.0
CHUNK = 65536


class Listening(Protocol):
    @property
    def listen_address(self) -> str: ...


Target = Listening | str | int


def address_of(target: Target) -> tuple[str, int]:
    """(host, port) to connect to; a node of this process is reached on 127.0.0.1."""
    if isinstance(target, int):
        return "127.0.0.1", target
    text = target if isinstance(target, str) else target.listen_address
    host, _, port = text.rpartition(":")
    return ("127.0.0.1" if not isinstance(target, str) else host.strip("[]")), int(port)


class Client:
    """One downstream connection (see the module's rules)."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, collect: bool = False
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.received = bytearray()
        self.eof = False
        host, port = writer.get_extra_info("sockname")[:2]
        self.local_port: int = port
        self.local = f"{host}:{port}"
        self._taken = 0  # bytes of ``received`` that receive_* returned
        self._arrived = asyncio.Event()
        self._task = asyncio.create_task(self._collect()) if collect else None

    @classmethod
    async def connect(
        cls,
        target: Target,
        *,
        ssl: tls.SSLContext | None = None,
        header: bytes | None = None,
        rcvbuf: int | None = None,
        collect: bool = False,
    ) -> Client:
        host, port = address_of(target)
        sock: socket.socket | None = None
        if rcvbuf is not None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.setblocking(False)
            try:
                await asyncio.get_running_loop().sock_connect(sock, (host, port))
            except OSError:
                sock.close()
                raise
        first_ssl = ssl if header is None else None
        if sock is not None:
            server_name = host if first_ssl is not None else None
            opened = asyncio.open_connection(sock=sock, ssl=first_ssl, server_hostname=server_name)
        else:
            opened = asyncio.open_connection(host, port, ssl=first_ssl)
        reader, writer = await opened
        if header is not None:
            writer.write(header)
            await writer.drain()
            if ssl is not None:
                await writer.start_tls(ssl)
        return cls(reader, writer, collect=collect)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    @property
    def remote_as_node_sees_it(self) -> str:
        return self.local

    @property
    def peer_fingerprint(self) -> str:
        """The SHA-256 of the certificate the node presented (TLS)."""
        return fingerprint(self.writer.get_extra_info("ssl_object").getpeercert(True))

    # sending ----------------------------------------------------------------------------

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def round_trip(
        self, data: bytes, *, reply: bytes | None = None, within: float = READ_TIMEOUT
    ) -> float:
        """Send ``data``; wait for ``reply`` (default: ``data``); the seconds it took."""
        expected = data if reply is None else reply
        started = time.monotonic()
        if self._task is None:
            await self.send(data)
            got = await self.receive_exactly(len(expected), within=within)
            assert got == expected
        else:
            before = self.count(expected)
            await self.send(data)
            await self.expect(expected, times=before + 1, within=within)
        return time.monotonic() - started

    # receiving --------------------------------------------------------------------------

    def collect(self) -> None:
        """From now on, read all the time in a task (see the module's rules)."""
        if self._task is None:
            self._task = asyncio.create_task(self._collect())

    def count(self, token: bytes) -> int:
        """How many times ``token`` has arrived so far."""
        return bytes(self.received).count(token)

    def tokens(self, separator: bytes) -> list[bytes]:
        """What has arrived so far, split at ``separator``; an unfinished last one left out."""
        *complete, _ = bytes(self.received).split(separator)
        return complete

    async def expect(self, token: bytes, *, times: int = 1, within: float = READ_TIMEOUT) -> None:
        """Wait until ``token`` has arrived at least ``times`` times."""
        try:
            async with asyncio.timeout(within):
                while self.count(token) < times:
                    await self._more()
        except (TimeoutError, asyncio.IncompleteReadError) as error:
            wanted = f"{self.local} to receive {token!r} x{times} within {within:g} s"
            raise AssertionError(f"{wanted} ({self!r})") from error

    async def receive_exactly(self, size: int, *, within: float = READ_TIMEOUT) -> bytes:
        async with asyncio.timeout(within):
            while len(self.received) - self._taken < size:
                await self._more(size)
        return self._take(size)

    async def receive_until(self, marker: bytes, *, within: float = READ_TIMEOUT) -> bytes:
        """Everything up to and including ``marker``."""
        async with asyncio.timeout(within):
            while (end := self.received.find(marker, self._taken)) < 0:
                await self._more()
        return self._take(end + len(marker) - self._taken)

    async def closed_by_peer(self, *, within: float = READ_TIMEOUT) -> bytes:
        """Read to end of stream (EOF or reset); what came before it, not yet received."""
        async with asyncio.timeout(within):
            while not self.eof:
                try:
                    await self._more()
                except ConnectionError:
                    break
        return self._take(len(self.received) - self._taken)

    def _take(self, size: int) -> bytes:
        taken = bytes(self.received[self._taken : self._taken + size])
        self._taken += size
        return taken

    async def _more(self, wanted: int | None = None) -> None:
        """Wait for more bytes: from the collecting task, or read here."""
        if self.eof:
            raise asyncio.IncompleteReadError(bytes(self.received[self._taken :]), wanted)
        if self._task is not None:
            self._arrived.clear()
            await self._arrived.wait()
            return
        try:
            chunk = await self.reader.read(CHUNK)
        except ConnectionError:
            self.eof = True
            raise
        self._arrive(chunk)

    def _arrive(self, chunk: bytes) -> None:
        if chunk:
            self.received += chunk
        else:
            self.eof = True
        self._arrived.set()

    async def _collect(self) -> None:
        with contextlib.suppress(OSError):
            while chunk := await self.reader.read(CHUNK):
                self._arrive(chunk)
        self._arrive(b"")

    # closing ----------------------------------------------------------------------------

    async def aclose(self) -> None:
        if not self.writer.is_closing():
            self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def __repr__(self) -> str:
        tail = bytes(self.received[-200:])
        return f"<Client {self.local} received={len(self.received)} eof={self.eof} tail={tail!r}>"


async def close_all(clients: Iterable[Client]) -> None:
    for client in clients:
        await client.aclose()
