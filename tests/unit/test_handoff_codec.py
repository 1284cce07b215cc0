"""The state a handoff carries, encoded and decoded exactly; older and newer writers read;
what cannot be used is refused before anything is."""

from __future__ import annotations

from typing import cast

import pytest

from paradoxplex.node.delivery.commands import Answer
from paradoxplex.node.handoff.codec import (
    SESSION_STATE_VERSION,
    SessionSnapshot,
    decode_keys,
    decode_numbered,
    decode_position,
    decode_session,
    decode_terms,
    decode_upstreams,
    encode_keys,
    encode_numbered,
    encode_position,
    encode_session,
    encode_terms,
    encode_upstreams,
)
from paradoxplex.node.handoff.terms import PROTOCOL, Terms
from paradoxplex.node.links.queue import Outgoing
from paradoxplex.shared.errors import HandoffError
from paradoxplex.shared.fleet import NO_POSITION, BusPosition, Numbering
from paradoxplex.shared.ordering import Position
from paradoxplex.shared.sessions import SessionInfo, SessionState
from paradoxplex.shared.upstreams import UpstreamMode, UpstreamSpec
from paradoxplex.wire import handoff_pb2 as pb
from paradoxplex.wire import upstream_pb2

UUID = "0f8c6d9e-1b2a-4c3d-8e4f-5a6b7c8d9e10"
INCARNATION = "0a1b2c3d4e5f"  # the node's, carried on by the new process


def snapshot() -> SessionSnapshot:
    info = SessionInfo(
        UUID,
        "n1",
        "10.0.0.7:4242",
        1700000000.5,
        state=SessionState.PAUSED,
        labels={"site": "east", "kind": "meter"},
        bytes_in=100,
        bytes_out=50,
        messages_in=3,
        messages_out=2,
        incarnation=INCARNATION,
    )
    info.seq = 41
    event = upstream_pb2.SocketEvent(kind=upstream_pb2.SocketEvent.CONNECTED, node_id="n1")
    return SessionSnapshot(
        info,
        proxied=True,
        unframed=b"\x00\x00\x00\x09half",
        held=[b"frame one", b"frame two"],
        replies=[b"reply one"],
        numbered=[Outgoing(UUID, b"", event, 39, 1), Outgoing(UUID, b"sent once", None, 40, 2)],
    )


def round_trip(message: pb.SessionState, max_frame: int = 1024) -> SessionSnapshot:
    wire = pb.SessionState.FromString(message.SerializeToString())
    return decode_session(wire, node_id="n1", incarnation=INCARNATION, max_frame=max_frame)


def test_a_socket_state_round_trips_exactly() -> None:
    before = snapshot()
    encoded = encode_session(before)
    assert encoded.version == SESSION_STATE_VERSION
    after = round_trip(encoded)
    assert after == before
    assert after.info.seq == before.info.seq == 41  # numbered on from there


def test_numbered_messages_keep_their_number_attempt_and_event() -> None:
    after = round_trip(encode_session(snapshot()))
    assert after.numbered == snapshot().numbered
    assert [item.client_uuid for item in after.numbered] == [UUID, UUID]
    relayed = pb.Numbered.FromString(encode_numbered(snapshot().numbered[1]).SerializeToString())
    assert decode_numbered(relayed) == snapshot().numbered[1]


def test_an_older_writer_without_later_fields_reads_with_their_zero_values() -> None:
    older = pb.SessionState(client_uuid=UUID, remote="10.0.0.7:4242", connected_at=5.0)
    read = round_trip(older)
    assert read.info.state is SessionState.ACTIVE
    assert (read.held, read.replies, read.unframed, dict(read.info.labels)) == ([], [], b"", {})


def test_a_newer_writer_with_unknown_fields_reads() -> None:
    """Field 99 (varint 7) and field 100 (bytes) do not exist yet: they are skipped."""
    newer = encode_session(snapshot()).SerializeToString() + bytes([0x98, 0x06, 7])
    newer += bytes([0xA2, 0x06, 3]) + b"abc"
    read = decode_session(
        pb.SessionState.FromString(newer), node_id="n1", incarnation=INCARNATION, max_frame=1024
    )
    assert read == snapshot()


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"client_uuid": "not-a-uuid"}, "valid uuid"),
        ({"client_uuid": UUID.replace("-", "")}, "valid uuid"),
        ({"remote": ""}, "no remote address"),
        ({"unframed": b"x" * 1029}, "1029 unframed bytes"),
        ({"labels": {"bad key!": "v"}}, "bad labels"),
    ],
)
def test_a_state_that_cannot_be_used_is_refused(change: dict[str, object], words: str) -> None:
    message = encode_session(snapshot())
    for name, value in change.items():
        if name == "labels":
            message.labels.clear()
            message.labels.update(cast(dict[str, str], value))
        else:
            setattr(message, name, value)
    with pytest.raises(HandoffError) as caught:
        round_trip(message)
    assert words in caught.value.reason
    assert caught.value.step == "transfer"


def test_the_bus_position_round_trips_exactly() -> None:
    position = BusPosition(
        present=True,
        inbox_last="1700000000000-3",
        fleet_last="1700000000001-0",
        since=1700000000000,
        inbox=(Position("n2", (1 << 60) + 5, 9, 12), Position("n3", 7, 1, 1)),
        fleet=(Position("n2", (1 << 60) + 5, 2, 2),),
        epoch=(1700000000000 << 20) | 12345,
        peers=(Numbering("n2", 4, 40), Numbering("n3", 1, 1)),
        fleet_numbering=Numbering("", 6, 6),
    )
    wire = pb.BusPosition.FromString(encode_position(position).SerializeToString())
    assert decode_position(wire) == position
    assert decode_position(encode_position(NO_POSITION)) == NO_POSITION


def test_idempotency_records_round_trip() -> None:
    records = [
        ("k1", b"\x01" * 16, 599.5, Answer("ok")),
        ("k2", b"\x02", 3.0, Answer("error", b"x")),
    ]
    wire = [pb.KeyRecord.FromString(r.SerializeToString()) for r in encode_keys(records)]
    assert decode_keys(wire) == records


def test_terms_and_upstreams_round_trip() -> None:
    terms = Terms(PROTOCOL, "n1", "0.0.0.0:7999", "line", 99, True, False, "memory", "a:1")
    assert decode_terms(encode_terms(terms)) == terms
    specs = [
        UpstreamSpec("10.0.0.1", 45888, 3.0, 9.0),
        UpstreamSpec("up.example", 443, mode=UpstreamMode.DRAINING, tls=True, server_name="x"),
    ]
    assert decode_upstreams(encode_upstreams(specs)) == specs
    with pytest.raises(HandoffError):
        decode_upstreams(['{"host": "bad host!", "port": 1}'])
