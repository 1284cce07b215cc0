"""The PROXY protocol header (HAProxy's spec, versions 1 and 2), read from the front of a
socket: bytes in, the client's real address out.

Rules:
- ``ProxyHeaderReader.feed(data)`` returns the ``ProxyHeader`` once it is complete, None while
  it needs more, and raises ``BadProxyHeader(reason)`` for anything else (no signature, a
  malformed v1 line, an unsupported v2 version or command, an address block too short).
- ``need()`` is how many more bytes can be read without reading past the header: the edge
  reads exactly that much, so the bytes after the header (a TLS ClientHello, the client's
  data) stay in the socket. Bytes fed past the end anyway are kept in ``rest``.
- Bounded: a v1 line is at most ``V1_MAX`` (107) bytes with its CRLF; a v2 header at most
  ``max_v2`` bytes (default ``DEFAULT_MAX_V2``, 16 bytes plus address block plus TLVs).
- v1 ``TCP4``/``TCP6`` and v2 ``PROXY`` over ``INET``/``INET6`` name the source;
  v1 ``UNKNOWN``, v2 ``LOCAL`` (a health check of the proxy itself), v2 ``UNSPEC`` and ``UNIX``
  families carry none: ``source`` is None and the connection's own address applies.
  v2 TLVs are skipped.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from paradoxplex.shared.errors import BadProxyHeader

V1_PREFIX = b"PROXY "
V1_MAX = 107
V1_MIN = len(b"PROXY UNKNOWN\r\n")
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_FIXED = 16
DEFAULT_MAX_V2 = 4096
DEFAULT_HEADER_TIMEOUT = 5.0  # seconds a client has to send its header (the listener waits)
# v2 family (high nibble of byte 14) -> (address block size, address version) for addresses
V2_FAMILIES = {0x1: (12, 4), 0x2: (36, 6)}
V2_UNSPEC_FAMILIES = (0x0, 0x3)  # UNSPEC, UNIX: no address to use
V2_LOCAL, V2_PROXY = 0x0, 0x1


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """A complete header; ``source``/``destination`` are (host, port) or None (see rules)."""

    version: int
    source: tuple[str, int] | None
    destination: tuple[str, int] | None
    length: int

    @property
    def remote(self) -> str | None:
        """The client as ``host:port``, as sessions show their remote address."""
        return None if self.source is None else f"{self.source[0]}:{self.source[1]}"


class ProxyHeaderReader:
    """Reads one header from the front of a stream (see the module's rules)."""

    __slots__ = ("_buffer", "header", "max_v2", "rest")

    def __init__(self, *, max_v2: int = DEFAULT_MAX_V2) -> None:
        self.max_v2 = max_v2
        self._buffer = bytearray()
        self.header: ProxyHeader | None = None
        self.rest = b""

    def need(self) -> int:
        """Bytes that may be read now without going past the header (0 once complete)."""
        if self.header is not None:
            return 0
        data, have = self._buffer, len(self._buffer)
        if not have or data[0] != V2_SIGNATURE[0]:
            if have < V1_MIN:
                return V1_MIN - have
            return 1 if data.endswith(b"\r") else 2
        if have < V2_FIXED:
            return V2_FIXED - have
        return V2_FIXED + _v2_length(data) - have

    def feed(self, data: bytes) -> ProxyHeader | None:
        """Take more bytes; the header when complete, else None; raises ``BadProxyHeader``."""
        if self.header is not None:
            self.rest += data
            return self.header
        self._buffer += data
        buffer = self._buffer
        header = self._feed_v2(buffer) if buffer[:1] == V2_SIGNATURE[:1] else self._feed_v1(buffer)
        if header is not None:
            self.header = header
            self.rest = bytes(buffer[header.length :])
            self._buffer = bytearray()
        return header

    def _feed_v1(self, buffer: bytearray) -> ProxyHeader | None:
        head = bytes(buffer[: len(V1_PREFIX)])
        if not V1_PREFIX.startswith(head):
            raise BadProxyHeader("no PROXY protocol signature")
        end = buffer.find(b"\r\n")
        if end < 0:
            if len(buffer) >= V1_MAX:
                raise BadProxyHeader(f"v1 line longer than {V1_MAX} bytes")
            return None
        if end + 2 > V1_MAX:
            raise BadProxyHeader(f"v1 line longer than {V1_MAX} bytes")
        return parse_v1(bytes(buffer[:end]), length=end + 2)

    def _feed_v2(self, buffer: bytearray) -> ProxyHeader | None:
        head = bytes(buffer[: len(V2_SIGNATURE)])
        if not V2_SIGNATURE.startswith(head):
            raise BadProxyHeader("no PROXY protocol signature")
        if len(buffer) < V2_FIXED:
            return None
        total = V2_FIXED + _v2_length(buffer)
        if total > self.max_v2:
            raise BadProxyHeader(f"v2 header of {total} bytes exceeds the limit of {self.max_v2}")
        if len(buffer) < total:
            return None
        return parse_v2(bytes(buffer[:total]))

    def __repr__(self) -> str:
        state = "done" if self.header is not None else f"need={self.need()}"
        return f"<ProxyHeaderReader buffered={len(self._buffer)} {state}>"


def _v2_length(data: bytearray | bytes) -> int:
    length: int = struct.unpack_from("!H", data, 14)[0]
    return length


def parse_v1(line: bytes, *, length: int) -> ProxyHeader:
    """``PROXY TCP4|TCP6 SRC DST SPORT DPORT`` or ``PROXY UNKNOWN ...`` (without its CRLF)."""
    try:
        text = line.decode("ascii")
    except UnicodeDecodeError:
        raise BadProxyHeader("v1 line is not ASCII") from None
    words = text.split(" ")
    if len(words) >= 2 and words[1] == "UNKNOWN":
        return ProxyHeader(1, None, None, length)
    if len(words) != 6 or words[1] not in ("TCP4", "TCP6"):
        raise BadProxyHeader("v1 line is not PROXY TCP4|TCP6|UNKNOWN SRC DST SPORT DPORT")
    version = 4 if words[1] == "TCP4" else 6
    source = _v1_address(words[2], words[4], version)
    destination = _v1_address(words[3], words[5], version)
    return ProxyHeader(1, source, destination, length)


def _v1_address(host: str, port: str, version: int) -> tuple[str, int]:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise BadProxyHeader(f"v1 address is not an IPv{version} address") from None
    if address.version != version:
        raise BadProxyHeader(f"v1 address is not an IPv{version} address")
    if not (port.isascii() and port.isdigit() and len(port) <= 5 and int(port) <= 65535):
        raise BadProxyHeader("v1 port is not a number in 0-65535")
    return str(address), int(port)


def parse_v2(data: bytes) -> ProxyHeader:
    """A complete v2 header: signature, version/command, family/protocol, length, body."""
    version, command = data[12] >> 4, data[12] & 0x0F
    if version != 2:
        raise BadProxyHeader(f"v2 header with version {version}")
    if command not in (V2_LOCAL, V2_PROXY):
        raise BadProxyHeader(f"v2 header with unknown command {command}")
    family = data[13] >> 4
    if command == V2_LOCAL or family in V2_UNSPEC_FAMILIES:
        return ProxyHeader(2, None, None, len(data))
    if family not in V2_FAMILIES:
        raise BadProxyHeader(f"v2 header with unknown address family {family}")
    size, ip_version = V2_FAMILIES[family]
    body = data[V2_FIXED:]
    if len(body) < size:
        raise BadProxyHeader(f"v2 address block of {len(body)} bytes, {size} needed")
    half = (size - 4) // 2
    source_ip = ipaddress.ip_address(body[:half])
    destination_ip = ipaddress.ip_address(body[half : 2 * half])
    source_port, destination_port = struct.unpack_from("!HH", body, 2 * half)
    assert source_ip.version == ip_version
    return ProxyHeader(
        2,
        (str(source_ip), source_port),
        (str(destination_ip), destination_port),
        len(data),
    )
