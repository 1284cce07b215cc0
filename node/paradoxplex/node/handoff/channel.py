"""One handoff connection: a Unix stream socket carrying frames and file descriptors.

Rules:
- A frame is a 4-byte big-endian length and a ``handoff.Frame``; at most ``MAX_FRAME``
  bytes (a larger one is a ``HandoffError``: the other side is not a paradoxplex node).
- A frame's ``fds`` file descriptors travel with its first byte (SCM_RIGHTS), at most
  ``MAX_FDS`` per frame (the kernel's SCM_MAX_FD is 253). The receiver owns what it receives
  and closes what it does not use; a frame is returned once its descriptors are all in.
- The peer's credentials are checked once (``peer_uid``): only the same user (or root) may
  take a node's sockets.
- The other side closing (or the connection breaking) is ``ChannelClosed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
from collections import deque
from collections.abc import Callable, Iterable, Sequence

from paradoxplex.shared.errors import HandoffError
from paradoxplex.wire import handoff_pb2 as pb

MAX_FRAME = 64 * 1024 * 1024
MAX_FDS = 250
READ_SIZE = 256 * 1024
HEADER = 4


class ChannelClosed(ConnectionError):
    """The other process closed the handoff connection, or it broke."""


def peer_uid(sock: socket.socket) -> int:
    """The user id of the process at the other end of a Unix socket (Linux SO_PEERCRED)."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


def close_fds(fds: Iterable[int]) -> None:
    """Close received descriptors that are not used (one already closed is skipped)."""
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


class Channel:
    """Frames with file descriptors over a connected Unix stream socket (see the rules)."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self._buffer = bytearray()
        self._fds: deque[int] = deque()
        self._closed = False

    async def send(self, frame: pb.Frame, fds: Sequence[int] = ()) -> None:
        if len(fds) > MAX_FDS:
            raise ValueError(f"at most {MAX_FDS} descriptors per frame")
        frame.fds = len(fds)
        body = frame.SerializeToString()
        data = memoryview(len(body).to_bytes(HEADER, "big") + body)
        sent = 0
        while sent < len(data):
            try:
                if sent == 0 and fds:
                    sent += socket.send_fds(self.sock, [data], list(fds))
                else:
                    sent += self.sock.send(data[sent:])
            except (BlockingIOError, InterruptedError):
                await self._wait(writable=True)
            except OSError as error:
                raise ChannelClosed(os.strerror(error.errno or 0) or str(error)) from None

    async def receive(self) -> tuple[pb.Frame, list[int]]:
        """The next frame and the descriptors that came with it."""
        while True:
            taken = self._take()
            if taken is not None:
                return taken
            await self._fill()

    def _take(self) -> tuple[pb.Frame, list[int]] | None:
        buffer = self._buffer
        if len(buffer) < HEADER:
            return None
        size = int.from_bytes(buffer[:HEADER], "big")
        if size > MAX_FRAME:
            raise HandoffError("channel", f"a frame of {size} bytes: not a paradoxplex node")
        if len(buffer) < HEADER + size:
            return None
        frame = pb.Frame()
        try:
            frame.ParseFromString(bytes(buffer[HEADER : HEADER + size]))
        except Exception:
            raise HandoffError("channel", "an undecodable frame") from None
        if frame.fds > len(self._fds):  # they come with its first byte, never later
            raise HandoffError("channel", f"a frame without its {frame.fds} descriptors")
        del buffer[: HEADER + size]
        return frame, [self._fds.popleft() for _ in range(frame.fds)]

    async def _fill(self) -> None:
        while True:
            try:
                data, fds, flags, _ = socket.recv_fds(self.sock, READ_SIZE, MAX_FDS + 3)
            except (BlockingIOError, InterruptedError):
                await self._wait(writable=False)
                continue
            except OSError as error:
                raise ChannelClosed(os.strerror(error.errno or 0) or str(error)) from None
            self._fds.extend(fds)
            if flags & socket.MSG_CTRUNC:
                raise HandoffError("channel", "file descriptors were cut off on the way")
            if not data:
                raise ChannelClosed("the other process closed the connection")
            self._buffer += data
            return

    async def _wait(self, *, writable: bool) -> None:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        fd = self.sock.fileno()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        add: Callable[..., None] = loop.add_writer if writable else loop.add_reader
        remove: Callable[[int], bool] = loop.remove_writer if writable else loop.remove_reader
        add(fd, wake)
        try:
            await ready
        finally:
            remove(fd)

    def close(self) -> None:
        """Close the connection and every descriptor received but not taken."""
        if self._closed:
            return
        self._closed = True
        while self._fds:
            with contextlib.suppress(OSError):
                os.close(self._fds.popleft())
        self.sock.close()

    def __repr__(self) -> str:
        return f"<Channel buffered={len(self._buffer)} fds={len(self._fds)} closed={self._closed}>"
