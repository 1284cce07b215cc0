"""Framing: bytes read from a socket in, messages for upstreams out.

Rules:
- ``raw`` (the original's behaviour): each read is one message; a read larger than
  ``max_frame`` is an oversize frame (reads are at most 256 KiB, so only a small limit bites).
- ``line``: messages end with ``\\n``; the newline is not part of the message. A partial line
  is held until its end arrives; holding more than ``max_frame`` bytes without a newline is an
  oversize frame.
- ``length``: a 4-byte big-endian length, then that many bytes. A declared length over
  ``max_frame`` is an oversize frame at once, before its bytes arrive.
- Every framer holds at most ``max_frame`` (+4) bytes; ``feed`` raises ``FrameTooLarge``.
- ``pending`` is what a framer holds (read, not yet a whole frame): feeding it to a new framer
  of the same kind gives no frame and leaves that framer where this one was (a hot handoff
  moves a socket in the middle of a frame so).
"""

from __future__ import annotations

from typing import Protocol

from paradoxplex.shared.errors import FrameTooLarge

DEFAULT_MAX_FRAME = 1024 * 1024
DEFAULT_FRAMING = "raw"  # as the original: each read is one message


class Framer(Protocol):
    def feed(self, data: bytes) -> list[bytes]: ...

    @property
    def buffered(self) -> int: ...

    @property
    def pending(self) -> bytes: ...


class RawFramer:
    """Each read is one message, as the original."""

    def __init__(self, *, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.max_frame = max_frame

    def feed(self, data: bytes) -> list[bytes]:
        if len(data) > self.max_frame:
            raise FrameTooLarge(len(data), self.max_frame)
        return [data] if data else []

    @property
    def buffered(self) -> int:
        return 0

    @property
    def pending(self) -> bytes:
        return b""


class LineFramer:
    """Newline-terminated messages; the newline is stripped."""

    def __init__(self, *, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        if b"\n" not in data:
            self._buffer += data
            if len(self._buffer) > self.max_frame:
                raise FrameTooLarge(len(self._buffer), self.max_frame)
            return []
        self._buffer += data
        *frames, rest = bytes(self._buffer).split(b"\n")
        self._buffer = bytearray(rest)
        for frame in frames:
            if len(frame) > self.max_frame:
                raise FrameTooLarge(len(frame), self.max_frame)
        if len(rest) > self.max_frame:
            raise FrameTooLarge(len(rest), self.max_frame)
        return frames

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    @property
    def pending(self) -> bytes:
        return bytes(self._buffer)


class LengthFramer:
    """A 4-byte big-endian length prefix, then the message."""

    HEADER = 4

    def __init__(self, *, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        frames: list[bytes] = []
        view = self._buffer
        start = 0
        while len(view) - start >= self.HEADER:
            size = int.from_bytes(view[start : start + self.HEADER], "big")
            if size > self.max_frame:
                raise FrameTooLarge(size, self.max_frame)
            end = start + self.HEADER + size
            if end > len(view):
                break
            frames.append(bytes(view[start + self.HEADER : end]))
            start = end
        if start:
            del self._buffer[:start]
        return frames

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    @property
    def pending(self) -> bytes:
        return bytes(self._buffer)


FRAMERS: dict[str, type[RawFramer] | type[LineFramer] | type[LengthFramer]] = {
    "raw": RawFramer,
    "line": LineFramer,
    "length": LengthFramer,
}


_RAW: dict[int, RawFramer] = {}


def make_framer(name: str, *, max_frame: int = DEFAULT_MAX_FRAME) -> Framer:
    """A framer for one socket. ``raw`` keeps no state, so sockets share one per limit."""
    if name == "raw":
        framer = _RAW.get(max_frame)
        if framer is None:
            framer = _RAW[max_frame] = RawFramer(max_frame=max_frame)
        return framer
    return FRAMERS[name](max_frame=max_frame)
