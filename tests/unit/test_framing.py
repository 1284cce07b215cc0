"""Framing: bytes in, frames out, bounded, whatever the chunk boundaries."""

from __future__ import annotations

import random
from collections.abc import Iterable

import pytest

from paradoxplex.shared.errors import FrameTooLarge, FramingError, ParadoxplexError
from paradoxplex.shared.framing import (
    DEFAULT_MAX_FRAME,
    FRAMERS,
    Framer,
    LengthFramer,
    LineFramer,
    RawFramer,
    make_framer,
)

NAMES = ("raw", "line", "length")


def prefixed(*messages: bytes) -> bytes:
    return b"".join(len(message).to_bytes(4, "big") + message for message in messages)


def lines(*messages: bytes) -> bytes:
    return b"".join(message + b"\n" for message in messages)


def feed_all(framer: Framer, chunks: Iterable[bytes]) -> list[bytes]:
    frames: list[bytes] = []
    for chunk in chunks:
        frames.extend(framer.feed(chunk))
    return frames


def byte_by_byte(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def random_chunks(data: bytes, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    chunks: list[bytes] = []
    start = 0
    while start < len(data):
        size = rng.randint(0, 17)  # 0 makes empty reads too
        chunks.append(data[start : start + size])
        start += size
    return chunks


# (framer name, encoded stream, the messages it carries)
STREAMS: list[tuple[str, bytes, list[bytes]]] = [
    ("line", lines(b"a", b"bb", b"ccc"), [b"a", b"bb", b"ccc"]),
    ("line", lines(b"", b"", b"x"), [b"", b"", b"x"]),
    ("line", lines(b"\x00\xff\r", b"tab\there"), [b"\x00\xff\r", b"tab\there"]),
    ("line", lines(*[b"%d" % i * i for i in range(12)]), [b"%d" % i * i for i in range(12)]),
    ("length", prefixed(b"a", b"bb", b"ccc"), [b"a", b"bb", b"ccc"]),
    ("length", prefixed(b"", b"", b"x"), [b"", b"", b"x"]),
    ("length", prefixed(b"\n\n", b"\x00\x00\x00\x01"), [b"\n\n", b"\x00\x00\x00\x01"]),
    ("length", prefixed(b"z" * 300, b"y" * 256), [b"z" * 300, b"y" * 256]),
]
STREAM_IDS = [f"{name}-{index}" for index, (name, _, _) in enumerate(STREAMS)]


@pytest.mark.parametrize(("name", "data", "messages"), STREAMS, ids=STREAM_IDS)
def test_feed_at_once_gives_every_message(name: str, data: bytes, messages: list[bytes]) -> None:
    framer = make_framer(name)
    assert framer.feed(data) == messages
    assert framer.buffered == 0


@pytest.mark.parametrize(("name", "data", "messages"), STREAMS, ids=STREAM_IDS)
def test_byte_by_byte_equals_at_once(name: str, data: bytes, messages: list[bytes]) -> None:
    assert feed_all(make_framer(name), byte_by_byte(data)) == messages


@pytest.mark.parametrize(("name", "data", "messages"), STREAMS, ids=STREAM_IDS)
@pytest.mark.parametrize("seed", range(8))
def test_random_chunking_equals_at_once(
    name: str, data: bytes, messages: list[bytes], seed: int
) -> None:
    assert feed_all(make_framer(name), random_chunks(data, seed)) == messages


SHORT = [
    (stream, id_) for stream, id_ in zip(STREAMS, STREAM_IDS, strict=True) if len(stream[1]) < 40
]


@pytest.mark.parametrize(
    ("name", "data", "messages"), [s for s, _ in SHORT], ids=[i for _, i in SHORT]
)
def test_every_three_way_split_equals_at_once(
    name: str, data: bytes, messages: list[bytes]
) -> None:
    for first in range(len(data) + 1):
        for second in range(first, len(data) + 1):
            chunks = [data[:first], data[first:second], data[second:]]
            assert feed_all(make_framer(name), chunks) == messages, (first, second)


@pytest.mark.parametrize(
    ("framer", "partial", "held"),
    [
        (LineFramer(), b"abc", 3),
        (LineFramer(), b"a\nbc", 2),
        (LengthFramer(), b"\x00\x00", 2),
        (LengthFramer(), b"\x00\x00\x00\x05abc", 7),
        (LengthFramer(), prefixed(b"ok") + b"\x00", 1),
    ],
)
def test_partial_message_is_held(framer: Framer, partial: bytes, held: int) -> None:
    framer.feed(partial)
    assert framer.buffered == held


@pytest.mark.parametrize("name", NAMES)
def test_empty_read_yields_nothing(name: str) -> None:
    framer = make_framer(name)
    assert framer.feed(b"") == []
    assert framer.buffered == 0


@pytest.mark.parametrize(
    ("name", "before", "after", "messages"),
    [
        ("line", b"ab", b"c\n", [b"abc"]),
        ("length", b"\x00\x00", b"\x00\x01z", [b"z"]),
        ("length", b"\x00\x00\x00\x02a", b"b", [b"ab"]),
    ],
)
def test_empty_read_keeps_partial_state(
    name: str, before: bytes, after: bytes, messages: list[bytes]
) -> None:
    framer = make_framer(name)
    assert framer.feed(before) == []
    assert framer.feed(b"") == []
    assert framer.feed(after) == messages


@pytest.mark.parametrize("name", ["line", "length"])
def test_many_frames_in_one_read(name: str) -> None:
    messages = [str(i).encode() * (i % 7) for i in range(2000)]
    data = lines(*messages) if name == "line" else prefixed(*messages)
    framer = make_framer(name)
    assert framer.feed(data) == messages
    assert framer.buffered == 0


def test_many_frames_then_a_partial_one() -> None:
    framer = LengthFramer()
    data = prefixed(*[b"m"] * 100) + b"\x00\x00\x00\x03m"
    assert framer.feed(data) == [b"m"] * 100
    assert framer.buffered == 5
    assert framer.feed(b"mm") == [b"mmm"]


# --- raw ------------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"x", b"\n", b"\x00\x00\x00\x09", b"hi\nyo\n", b"q" * 8])
def test_raw_each_read_is_one_message(data: bytes) -> None:
    framer = RawFramer(max_frame=8)
    assert framer.feed(data) == [data]
    assert framer.buffered == 0


@pytest.mark.parametrize(("size", "limit"), [(9, 8), (2, 1), (DEFAULT_MAX_FRAME + 1, None)])
def test_raw_oversize_read(size: int, limit: int | None) -> None:
    framer = RawFramer() if limit is None else RawFramer(max_frame=limit)
    with pytest.raises(FrameTooLarge) as caught:
        framer.feed(b"r" * size)
    assert (caught.value.size, caught.value.limit) == (size, limit or DEFAULT_MAX_FRAME)


# --- line -----------------------------------------------------------------------------------

LIMIT = 16


@pytest.mark.parametrize(
    "chunks",
    [
        [b"a" * LIMIT + b"\n"],
        byte_by_byte(b"a" * LIMIT + b"\n"),
        [b"a" * (LIMIT - 1), b"a\n"],
        [b"x\n" + b"a" * LIMIT + b"\ny\n"],
    ],
    ids=["at-once", "byte-by-byte", "two-reads", "between-others"],
)
def test_line_exactly_at_limit_passes(chunks: list[bytes]) -> None:
    frames = feed_all(LineFramer(max_frame=LIMIT), chunks)
    assert b"a" * LIMIT in frames


@pytest.mark.parametrize(
    ("chunks", "size"),
    [
        ([b"a" * (LIMIT + 1) + b"\n"], LIMIT + 1),
        ([b"a" * (LIMIT + 1)], LIMIT + 1),  # no newline yet: raised before it arrives
        (byte_by_byte(b"a" * (LIMIT + 5)), LIMIT + 1),
        ([b"a" * LIMIT, b"a"], LIMIT + 1),
        ([b"ok\n" + b"a" * (LIMIT + 3) + b"\nok\n"], LIMIT + 3),
        ([b"ok\n" + b"a" * (LIMIT + 3)], LIMIT + 3),  # an oversize tail after a newline
        ([b"a" * 10, b"a" * 10 + b"\n"], LIMIT + 4),
    ],
    ids=[
        "with-newline",
        "without-newline",
        "byte-by-byte",
        "two-reads",
        "between-others",
        "tail",
        "completed-oversize",
    ],
)
def test_line_oversize(chunks: list[bytes], size: int) -> None:
    framer = LineFramer(max_frame=LIMIT)
    with pytest.raises(FrameTooLarge) as caught:
        feed_all(framer, chunks)
    assert (caught.value.size, caught.value.limit) == (size, LIMIT)


def test_line_holds_at_most_max_frame() -> None:
    framer = LineFramer(max_frame=LIMIT)
    framer.feed(b"a" * LIMIT)
    assert framer.buffered == LIMIT
    with pytest.raises(FrameTooLarge):
        framer.feed(b"a")


def test_line_keeps_carriage_return() -> None:
    assert LineFramer().feed(b"a\r\nb\n") == [b"a\r", b"b"]


# --- length ---------------------------------------------------------------------------------


def test_length_exactly_at_limit_passes() -> None:
    framer = LengthFramer(max_frame=LIMIT)
    assert framer.feed(prefixed(b"b" * LIMIT)) == [b"b" * LIMIT]


@pytest.mark.parametrize(
    ("declared", "limit"),
    [(LIMIT + 1, LIMIT), (2**32 - 1, LIMIT), (DEFAULT_MAX_FRAME + 1, DEFAULT_MAX_FRAME)],
)
def test_length_raises_on_the_header_before_the_body(declared: int, limit: int) -> None:
    framer = LengthFramer(max_frame=limit)
    with pytest.raises(FrameTooLarge) as caught:
        framer.feed(declared.to_bytes(4, "big"))
    assert (caught.value.size, caught.value.limit) == (declared, limit)


def test_length_header_split_raises_when_complete() -> None:
    framer = LengthFramer(max_frame=LIMIT)
    header = (LIMIT + 1).to_bytes(4, "big")
    for index in range(3):
        assert framer.feed(header[index : index + 1]) == []
    with pytest.raises(FrameTooLarge):
        framer.feed(header[3:])


def test_length_oversize_after_good_frames_in_one_read() -> None:
    framer = LengthFramer(max_frame=LIMIT)
    with pytest.raises(FrameTooLarge) as caught:
        framer.feed(prefixed(b"ok") + (LIMIT + 1).to_bytes(4, "big"))
    assert caught.value.size == LIMIT + 1


# --- garbage --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("seed", range(20))
def test_garbage_gives_bounded_frames_or_frame_too_large(name: str, seed: int) -> None:
    rng = random.Random(seed)
    data = rng.randbytes(rng.randint(1, 4000))
    framer = make_framer(name, max_frame=64)
    oversize: FrameTooLarge | None = None
    try:
        for chunk in random_chunks(data, seed):
            for frame in framer.feed(chunk):
                assert len(frame) <= 64
            assert framer.buffered <= 64 + 4
    except FrameTooLarge as error:  # anything else fails the test
        oversize = error
    if oversize is not None:
        assert (oversize.limit, oversize.size > 64) == (64, True)


@pytest.mark.parametrize(
    ("name", "garbage", "frames", "buffered"),
    [
        ("raw", b"\xff\xfe\x00garbage", [b"\xff\xfe\x00garbage"], 0),
        ("line", b"\xff\xfe\x00garbage", [], 10),
        ("length", b"\x00\x00\x00\x10\xff", [], 5),
    ],
)
def test_small_garbage_is_held_or_passed_on(
    name: str, garbage: bytes, frames: list[bytes], buffered: int
) -> None:
    framer = make_framer(name, max_frame=64)
    assert framer.feed(garbage) == frames
    assert framer.buffered == buffered


def test_error_message_names_sizes_not_payload() -> None:
    with pytest.raises(FrameTooLarge) as caught:
        LineFramer(max_frame=4).feed(b"SECRET-PAYLOAD\n")
    assert "SECRET" not in str(caught.value)
    assert "14" in str(caught.value)
    assert "4" in str(caught.value)
    assert isinstance(caught.value, FramingError)
    assert isinstance(caught.value, ParadoxplexError)


# --- the table ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind"), [("raw", RawFramer), ("line", LineFramer), ("length", LengthFramer)]
)
def test_make_framer_uses_the_table(name: str, kind: type[object]) -> None:
    assert FRAMERS[name] is kind
    framer = make_framer(name, max_frame=123)
    assert isinstance(framer, kind)
    assert getattr(framer, "max_frame") == 123  # noqa: B009 - Framer has no max_frame


def test_table_names() -> None:
    assert set(FRAMERS) == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_default_limit(name: str) -> None:
    assert getattr(make_framer(name), "max_frame") == DEFAULT_MAX_FRAME  # noqa: B009


@pytest.mark.parametrize(
    ("name", "before", "after", "frames"),
    [
        ("line", b"one\ntw", b"o\n", [b"two"]),
        ("line", b"no newline yet", b"!\n", [b"no newline yet!"]),
        ("length", prefixed(b"first") + prefixed(b"second")[:7], b"ond", [b"second"]),
        ("length", prefixed(b"x" * 300)[:2], prefixed(b"x" * 300)[2:], [b"x" * 300]),
        ("raw", b"anything", b"more", [b"more"]),
    ],
)
def test_what_a_framer_holds_restores_another(
    name: str, before: bytes, after: bytes, frames: list[bytes]
) -> None:
    """A socket moves (a hot handoff) in the middle of a frame: a new framer fed the old one's
    ``pending`` gives nothing, then gives the frame the rest completes."""
    old = make_framer(name)
    old.feed(before)
    new = make_framer(name)
    assert new.feed(old.pending) == []
    assert (new.pending, new.buffered) == (old.pending, old.buffered)
    assert new.feed(after) == frames
