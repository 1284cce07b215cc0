"""The PROXY protocol header reader, without I/O: the spec's examples, byte by byte and whole,
TLVs skipped, size limits, and exactly how much may be read at each step."""

from __future__ import annotations

import ipaddress
import struct

import pytest

from paradoxplex.shared.errors import BadProxyHeader
from paradoxplex.shared.proxy import (
    V1_MAX,
    V2_SIGNATURE,
    ProxyHeader,
    ProxyHeaderReader,
)

MAX6 = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
V1_TCP4 = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"
V1_TCP6 = f"PROXY TCP6 {MAX6} {MAX6} 65535 65535\r\n".encode()
V1_UNKNOWN = b"PROXY UNKNOWN\r\n"
V1_UNKNOWN_LONGEST = f"PROXY UNKNOWN {MAX6} {MAX6} 65535 65535\r\n".encode()


def v2(
    command: int = 1, family: int = 1, body: bytes = b"", *, version: int = 2, length: int = -1
) -> bytes:
    size = len(body) if length < 0 else length
    return (
        V2_SIGNATURE
        + bytes([version << 4 | command, family << 4 | 1])
        + struct.pack("!H", size)
        + body
    )


def inet(source: str, destination: str, ports: tuple[int, int]) -> bytes:
    return (
        ipaddress.ip_address(source).packed
        + ipaddress.ip_address(destination).packed
        + struct.pack("!HH", *ports)
    )


TLV = bytes([0x04]) + struct.pack("!H", 5) + b"vpc-1"  # a PP2_TYPE_NOOP-like TLV, skipped
V2_TCP4 = v2(1, 1, inet("10.1.2.3", "10.0.0.1", (40000, 7999)))
V2_TCP6 = v2(1, 2, inet("2001:db8::7", "2001:db8::1", (1234, 7999)) + TLV)
V2_LOCAL = v2(0, 0)
V2_UNIX = v2(1, 3, bytes(216))


def read_whole(data: bytes) -> ProxyHeader | None:
    return ProxyHeaderReader().feed(data)


def read_as_told(data: bytes) -> tuple[ProxyHeader | None, int]:
    """Feed exactly what ``need()`` allows, as the listener does; (header, bytes fed)."""
    reader = ProxyHeaderReader()
    fed = 0
    while (need := reader.need()) > 0:
        chunk = data[fed : fed + need]
        assert chunk, "the reader wanted more than the header holds"
        fed += len(chunk)
        header = reader.feed(chunk)
        if header is not None:
            return header, fed
    return reader.header, fed


EXAMPLES = [
    ("v1 tcp4", V1_TCP4, ("192.168.0.1", 56324), ("192.168.0.11", 443)),
    ("v1 tcp6", V1_TCP6, (MAX6, 65535), (MAX6, 65535)),
    ("v1 unknown", V1_UNKNOWN, None, None),
    ("v1 unknown longest", V1_UNKNOWN_LONGEST, None, None),
    ("v2 tcp4", V2_TCP4, ("10.1.2.3", 40000), ("10.0.0.1", 7999)),
    ("v2 tcp6 with a tlv", V2_TCP6, ("2001:db8::7", 1234), ("2001:db8::1", 7999)),
    ("v2 local", V2_LOCAL, None, None),
    ("v2 unix", V2_UNIX, None, None),
]


@pytest.mark.parametrize(("name", "data", "source", "destination"), EXAMPLES)
def test_the_specs_examples_are_read_whole(
    name: str, data: bytes, source: object, destination: object
) -> None:
    header = read_whole(data)
    assert header is not None
    assert (header.source, header.destination, header.length) == (source, destination, len(data))


@pytest.mark.parametrize(("name", "data", "source", "destination"), EXAMPLES)
def test_reading_what_need_allows_stops_exactly_at_the_end_of_the_header(
    name: str, data: bytes, source: object, destination: object
) -> None:
    header, fed = read_as_told(data + b"\x16\x03\x01 a TLS hello follows")
    assert header is not None
    assert fed == len(data)
    assert header.source == source


@pytest.mark.parametrize(("name", "data", "source", "destination"), EXAMPLES)
def test_byte_by_byte_gives_the_same_header(
    name: str, data: bytes, source: object, destination: object
) -> None:
    reader = ProxyHeaderReader()
    results = [reader.feed(data[i : i + 1]) for i in range(len(data))]
    assert results[:-1] == [None] * (len(data) - 1)
    assert results[-1] is not None
    assert results[-1].source == source


def test_bytes_after_the_header_are_kept_apart() -> None:
    reader = ProxyHeaderReader()
    header = reader.feed(V1_TCP4 + b"hello")
    assert header is not None
    assert header.remote == "192.168.0.1:56324"
    assert reader.rest == b"hello"
    assert reader.need() == 0
    assert reader.feed(b" world") is header
    assert reader.rest == b"hello world"


def test_the_remote_of_an_ipv6_source_is_host_colon_port() -> None:
    header = read_whole(V2_TCP6)
    assert header is not None
    assert header.remote == "2001:db8::7:1234"


BAD = [
    ("plain data", b"GET / HTTP/1.1\r\n\r\n", "no PROXY protocol signature"),
    ("a tls hello", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", "no PROXY protocol signature"),
    ("lower case", b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "no PROXY protocol signature"),
    ("v1 tcp5", b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", "TCP4|TCP6|UNKNOWN"),
    ("v1 missing port", b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "TCP4|TCP6|UNKNOWN"),
    ("v1 v6 in tcp4", b"PROXY TCP4 ::1 ::1 1 2\r\n", "not an IPv4 address"),
    ("v1 bad address", b"PROXY TCP4 1.2.3.999 5.6.7.8 1 2\r\n", "not an IPv4 address"),
    ("v1 port too big", b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "port"),
    ("v1 port not a number", b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", "port"),
    ("v1 not ascii", b"PROXY TCP4 1.2.3.\xff 5.6.7.8 1 2\r\n", "not ASCII"),
    ("v1 too long", b"PROXY UNKNOWN " + b"x" * V1_MAX, f"longer than {V1_MAX}"),
    ("v1 crlf past 107", b"PROXY UNKNOWN " + b"x" * 92 + b"\r\n", f"longer than {V1_MAX}"),
    ("v2 bad signature", V2_SIGNATURE[:11] + b"X" + bytes(8), "no PROXY protocol signature"),
    ("v2 version 1", v2(version=1), "version 1"),
    ("v2 command 2", v2(command=2), "unknown command 2"),
    ("v2 family 4", v2(family=4, body=bytes(12)), "unknown address family 4"),
    ("v2 short inet block", v2(1, 1, bytes(8)), "8 bytes, 12 needed"),
    ("v2 short inet6 block", v2(1, 2, bytes(12)), "12 bytes, 36 needed"),
    ("v2 over the limit", v2(1, 1, length=65535), "exceeds the limit of 4096"),
]


@pytest.mark.parametrize(("name", "data", "reason"), BAD)
def test_malformed_headers_are_refused_with_their_reason(
    name: str, data: bytes, reason: str
) -> None:
    with pytest.raises(BadProxyHeader) as caught:
        read_whole(data)
    assert reason in caught.value.reason
    assert str(caught.value).startswith("bad PROXY protocol header: ")


def test_a_wrong_first_byte_is_refused_at_once() -> None:
    with pytest.raises(BadProxyHeader):
        ProxyHeaderReader().feed(b"h")


def test_the_v2_limit_is_a_keyword_argument() -> None:
    header = v2(1, 1, inet("1.2.3.4", "5.6.7.8", (1, 2)) + bytes(100))
    with pytest.raises(BadProxyHeader, match="exceeds the limit of 64"):
        ProxyHeaderReader(max_v2=64).feed(header)
    assert ProxyHeaderReader(max_v2=128).feed(header) is not None


def test_need_never_reads_past_the_shortest_header() -> None:
    reader = ProxyHeaderReader()
    assert reader.need() == len(V1_UNKNOWN)
    assert reader.feed(b"PROXY UNKNOWN\r") is None
    assert reader.need() == 1
    v2_reader = ProxyHeaderReader()
    v2_reader.feed(V2_SIGNATURE[:1])
    assert v2_reader.need() == 15
    v2_reader.feed(V2_TCP4[1:16])
    assert v2_reader.need() == 12


def test_repr_summarises_the_state() -> None:
    reader = ProxyHeaderReader()
    assert repr(reader) == "<ProxyHeaderReader buffered=0 need=15>"
    reader.feed(V1_TCP4)
    assert repr(reader) == "<ProxyHeaderReader buffered=0 done>"
