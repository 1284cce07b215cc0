"""The bus envelope codec: every kind the node sends survives a round trip, payloads stay
binary (all 256 byte values, and empty), and garbage raises the documented ``DecodeError``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from google.protobuf.message import DecodeError

from paradoxplex.shared import envelopes
from paradoxplex.shared.sessions import BroadcastTarget
from paradoxplex.wire import bus_pb2

SENDER = "node-a"
S1 = "0f8fad5b-d9cb-469f-a165-70867728950e"
S2 = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
EVERY_BYTE = bytes(range(256))
PAYLOADS = [EVERY_BYTE, b"", b"\x00", b"\r\n\x00\xff" * 1000]
PAYLOAD_IDS = ["every-byte", "empty", "nul", "large"]


# Each kind the codec builds: its body's name, build(payload), and the body it must carry.
Build = Callable[[bytes], bytes]
Body = Callable[[bytes], Any]
KINDS: list[tuple[str, Build, Body]] = [
    (
        "deliver_batch",
        lambda payload: envelopes.deliver_batch(SENDER, [(S1, payload), (S2, payload[::-1])]),
        lambda payload: bus_pb2.DeliverBatch(
            items=[
                bus_pb2.Deliver(client_uuid=S1, payload=payload),
                bus_pb2.Deliver(client_uuid=S2, payload=payload[::-1]),
            ]
        ),
    ),
    (
        "broadcast",
        lambda payload: envelopes.broadcast(SENDER, BroadcastTarget.PAUSED, ("site", "a"), payload),
        lambda payload: bus_pb2.Broadcast(target="paused", label="site=a", payload=payload),
    ),
    (
        "command",
        lambda payload: envelopes.command(
            SENDER, "r-1", "send", S1, payload=payload, labels={"a": "b"}, deadline=12.5
        ),
        lambda payload: bus_pb2.Command(
            request_id="r-1",
            action="send",
            client_uuid=S1,
            payload=payload,
            labels={"a": "b"},
            deadline=12.5,
        ),
    ),
    (
        "reply",
        lambda payload: envelopes.reply(SENDER, "r-1", "ok", payload),
        lambda payload: bus_pb2.CommandReply(request_id="r-1", status="ok", body=payload),
    ),
]


@pytest.mark.parametrize("payload", PAYLOADS, ids=PAYLOAD_IDS)
@pytest.mark.parametrize(("kind", "build", "body"), KINDS, ids=[kind for kind, *_ in KINDS])
def test_round_trip(kind: str, build: Build, body: Body, payload: bytes) -> None:
    envelope = envelopes.parse(build(payload))
    assert envelope.sender == SENDER
    assert envelope.WhichOneof("body") == kind
    assert getattr(envelope, kind) == body(payload)


@pytest.mark.parametrize("upstream_id", ["127.0.0.1:45888", ""])
def test_control_round_trip(upstream_id: str) -> None:
    envelope = envelopes.parse(envelopes.control(SENDER, "reconcile", upstream_id))
    assert (envelope.sender, envelope.WhichOneof("body")) == (SENDER, "control")
    assert (envelope.control.action, envelope.control.upstream_id) == ("reconcile", upstream_id)


def test_every_kind_the_node_sends_is_covered() -> None:
    """``deliver`` (one reply) stays in the schema; the codec sends replies in batches."""
    kinds = {field.name for field in bus_pb2.Envelope.DESCRIPTOR.oneofs_by_name["body"].fields}
    assert {kind for kind, *_ in KINDS} | {"control"} == kinds - {"deliver"}


def test_broadcast_without_a_label() -> None:
    envelope = envelopes.parse(envelopes.broadcast(SENDER, BroadcastTarget.ALL, None, b"x"))
    assert (envelope.broadcast.target, envelope.broadcast.label) == ("all", "")


def test_command_defaults() -> None:
    envelope = envelopes.parse(envelopes.command(SENDER, "r-2", "get", S1))
    assert envelope.command == bus_pb2.Command(request_id="r-2", action="get", client_uuid=S1)


def test_an_empty_batch_is_still_a_batch() -> None:
    envelope = envelopes.parse(envelopes.deliver_batch(SENDER, []))
    assert envelope.WhichOneof("body") == "deliver_batch"
    assert list(envelope.deliver_batch.items) == []


def test_an_empty_envelope_parses_to_no_body() -> None:
    assert envelopes.parse(b"").WhichOneof("body") is None


@pytest.mark.parametrize(
    "garbage",
    [
        b"\xff",  # a tag cut short
        b"\x07",  # wire type 7 does not exist
        b"\x0a\x05ab",  # a length past the end
        b"\x0a\x02\xff\xfe",  # the sender is not UTF-8
        b"\x12\x03\x0a\x05a",  # a nested message cut short
        b"\x00",  # field number 0
        EVERY_BYTE,
    ],
    ids=["short-tag", "wire-type-7", "long-length", "not-utf8", "short-nested", "field-0", "bytes"],
)
def test_garbage_raises_decode_error(garbage: bytes) -> None:
    with pytest.raises(DecodeError):
        envelopes.parse(garbage)
