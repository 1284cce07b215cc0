"""The stand-in transports and protocols of a handoff.

- ``CaptureTransport`` (old process, from the freeze): stands for a frozen socket's transport.
  What its session writes is kept, in order, and not sent; the real transport (reading
  paused) goes on flushing what it already had. Its buffer size is both, so the write budget
  and the overflow policy apply as before. A close or abort is kept too (``ending``).
- ``RelayTransport`` (new process): stands for a socket the old process kept (TLS, closing);
  what its session does to it goes to the old process as a ``Relay`` message.
- ``Arrival`` (new process): the first protocol of an adopted socket. uvloop starts reading a
  socket it adopts before the protocol can pause it, so what arrives before the session takes
  over (data, the end of input, the loss) is kept in order and replayed to it.
- ``Gone``: the protocol of a transport whose socket another process holds now; nothing it
  hears matters here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from paradoxplex.wire import handoff_pb2 as pb


class CaptureTransport(asyncio.Transport):
    def __init__(self, real: asyncio.Transport) -> None:
        super().__init__()
        self.real = real
        self.written: list[bytes] = []
        self.size = 0
        self.ending = ""  # "", "close" or "abort"

    def write(self, data: bytes | bytearray | memoryview) -> None:
        chunk = bytes(data)
        self.written.append(chunk)
        self.size += len(chunk)

    def take(self) -> list[bytes]:
        """What was written since the last take."""
        written, self.written, self.size = self.written, [], 0
        return written

    def get_write_buffer_size(self) -> int:
        return self.size + self.real.get_write_buffer_size()

    def pause_reading(self) -> None:
        return None  # the real one stays paused while frozen

    def resume_reading(self) -> None:
        return None

    def is_reading(self) -> bool:
        return False

    def close(self) -> None:
        self.ending = self.ending or "close"

    def abort(self) -> None:
        self.ending = "abort"

    def is_closing(self) -> bool:
        return bool(self.ending)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.real.get_extra_info(name, default)

    def __repr__(self) -> str:
        return f"<CaptureTransport written={self.size} ending={self.ending!r}>"


class RelayTransport(asyncio.Transport):
    def __init__(self, client_uuid: str, relay: Callable[[pb.Relay], None]) -> None:
        super().__init__()
        self.client_uuid = client_uuid
        self._relay = relay
        self._closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._closing:
            write = pb.Write(client_uuid=self.client_uuid, payload=bytes(data))
            self._relay(pb.Relay(write=write))

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        self._relay(pb.Relay(pause=self.client_uuid))

    def resume_reading(self) -> None:
        self._relay(pb.Relay(resume=self.client_uuid))

    def close(self) -> None:
        if not self._closing:
            self._closing = True
            self._relay(pb.Relay(close=self.client_uuid))

    def abort(self) -> None:
        self.close()

    def is_closing(self) -> bool:
        return self._closing

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def __repr__(self) -> str:
        return f"<RelayTransport {self.client_uuid} closing={self._closing}>"


class Arrival(asyncio.Protocol):
    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def itself(self) -> Arrival:
        """A protocol factory that makes this one."""
        return self

    def data_received(self, data: bytes) -> None:
        self.events.append(("data", data))

    def eof_received(self) -> bool:
        self.events.append(("eof", None))
        return True  # half-closed: the session decides (it lingers, then closes)

    def connection_lost(self, exc: Exception | None) -> None:
        self.events.append(("lost", exc))


class Gone(asyncio.Protocol):
    def data_received(self, data: bytes) -> None:
        return None

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        return None
