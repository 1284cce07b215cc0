"""The state that travels in a handoff, to and from its messages (``handoff.proto``). Plain
code: no I/O.

Rules:
- A socket's state (``SessionSnapshot``) is a small versioned message: ``version`` is the
  writer's ``SESSION_STATE_VERSION``. Fields are only added; a reader takes what it knows of a
  newer message (protobuf skips unknown fields) and the zero value of what an older one lacks.
- What comes in is checked before it is used (``decode_session``): a canonical uuid, a
  remote address, at most ``max_frame`` + 4 bytes not yet framed, bounded counts of held
  frames and replies. A bad record is a ``HandoffError``: the new process refuses the whole
  handoff and the old one thaws.
- The bus position, the terms and the upstreams round-trip exactly.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import orjson

from paradoxplex.node.delivery.commands import Answer
from paradoxplex.node.handoff.steps import Step
from paradoxplex.node.handoff.terms import Terms
from paradoxplex.node.links.queue import Outgoing
from paradoxplex.shared.errors import HandoffError
from paradoxplex.shared.fleet import NO_POSITION, BusPosition, Numbering
from paradoxplex.shared.ordering import Position
from paradoxplex.shared.sessions import (
    NO_LABELS,
    SessionInfo,
    SessionState,
    canonical_uuid,
    check_labels,
)
from paradoxplex.shared.upstreams import UpstreamSpec
from paradoxplex.wire import handoff_pb2 as pb
from paradoxplex.wire import upstream_pb2

SESSION_STATE_VERSION = 1
#: Held frames or replies one socket may carry.
MAX_ITEMS = 100_000
#: The form every node writes (anything else goes through ``canonical_uuid``).
CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
PAUSED, ACTIVE = SessionState.PAUSED, SessionState.ACTIVE


@dataclass(slots=True)
class SessionSnapshot:
    """One socket as it stands when it moves: its record (its message number, ``info.seq``,
    included), whether its remote address came from a PROXY header, the bytes read but not
    framed, the frames not yet on a link, the replies not yet written, and its numbered
    messages that no upstream has yet (acknowledged delivery)."""

    info: SessionInfo
    proxied: bool = False
    unframed: bytes = b""
    held: list[bytes] = field(default_factory=list)
    replies: list[bytes] = field(default_factory=list)
    numbered: list[Outgoing] = field(default_factory=list)


def encode_session(snapshot: SessionSnapshot) -> pb.SessionState:
    """The message for one socket (fields at their zero value are left out: most sockets
    hold no frame, no reply and no label)."""
    info = snapshot.info
    state = pb.SessionState(
        version=SESSION_STATE_VERSION,
        client_uuid=info.client_uuid,
        remote=info.remote,
        connected_at=info.connected_at,
        bytes_in=info.bytes_in,
        bytes_out=info.bytes_out,
        messages_in=info.messages_in,
        messages_out=info.messages_out,
    )
    if snapshot.proxied:
        state.proxied = True
    if info.state is SessionState.PAUSED:
        state.paused = True
    if info.labels:
        state.labels.update(info.labels)
    if snapshot.unframed:
        state.unframed = snapshot.unframed
    if snapshot.held:
        state.held.extend(snapshot.held)
    if snapshot.replies:
        state.replies.extend(snapshot.replies)
    if info.seq:
        state.seq = info.seq
    if snapshot.numbered:
        state.numbered.extend(encode_numbered(item, with_uuid=False) for item in snapshot.numbered)
    return state


def encode_numbered(item: Outgoing, *, with_uuid: bool = True) -> pb.Numbered:
    event = item.event.SerializeToString() if item.event is not None else b""
    numbered = pb.Numbered(seq=item.seq, attempt=item.attempt, payload=item.payload, event=event)
    if with_uuid:
        numbered.client_uuid = item.client_uuid
    return numbered


def decode_numbered(numbered: pb.Numbered, client_uuid: str = "") -> Outgoing:
    """A numbered message (``client_uuid``: its socket's, when the message does not say)."""
    event = upstream_pb2.SocketEvent.FromString(numbered.event) if numbered.event else None
    owner = numbered.client_uuid or client_uuid
    return Outgoing(owner, numbered.payload, event, numbered.seq, numbered.attempt or 1)


def decode_session(
    state: pb.SessionState, *, node_id: str, incarnation: str, max_frame: int
) -> SessionSnapshot:
    """A socket's state, checked (``HandoffError`` when it cannot be used), as a socket of
    ``node_id``'s ``incarnation`` (this process's: the records are written again as its own)."""
    step = Step.TRANSFER.value
    client_uuid = state.client_uuid
    if not CANONICAL_UUID.fullmatch(client_uuid):
        client_uuid = canonical_uuid(client_uuid) or ""
        if not client_uuid:
            raise HandoffError(
                step, f"a socket state without a valid uuid ({state.client_uuid!r:.60})"
            )
    remote = state.remote
    if not remote:
        raise HandoffError(step, f"socket {client_uuid}: no remote address")
    unframed, held, replies = state.unframed, state.held, state.replies
    if len(unframed) > max_frame + 4:
        raise HandoffError(step, f"socket {client_uuid}: {len(unframed)} unframed bytes")
    if len(held) > MAX_ITEMS or len(replies) > MAX_ITEMS:
        raise HandoffError(step, f"socket {client_uuid}: too many held frames or replies")
    labels = NO_LABELS
    if state.labels:
        try:
            labels = check_labels(dict(state.labels))
        except Exception as error:
            raise HandoffError(step, f"socket {client_uuid}: bad labels: {error}") from None
    info = SessionInfo(
        client_uuid,
        node_id,
        remote,
        state.connected_at,
        PAUSED if state.paused else ACTIVE,
        labels,
        state.bytes_in,
        state.bytes_out,
        state.messages_in,
        state.messages_out,
        incarnation=incarnation,
    )
    info.seq = state.seq
    try:
        numbered = [decode_numbered(item, client_uuid) for item in state.numbered]
    except Exception:
        raise HandoffError(step, f"socket {client_uuid}: a bad numbered message") from None
    if len(numbered) > MAX_ITEMS:
        raise HandoffError(step, f"socket {client_uuid}: too many numbered messages")
    return SessionSnapshot(
        info,
        state.proxied,
        unframed,
        list(held) if held else [],
        list(replies) if replies else [],
        numbered,
    )


KeyRecord = tuple[str, bytes, float, Answer]


def encode_keys(records: Iterable[KeyRecord]) -> list[pb.KeyRecord]:
    """Idempotency records of socket commands (``ActionRecords.done``)."""
    return [
        pb.KeyRecord(
            key=key, fingerprint=print_, seconds_left=left, status=answer.status, body=answer.body
        )
        for key, print_, left, answer in records
    ]


def decode_keys(records: Iterable[pb.KeyRecord]) -> list[KeyRecord]:
    return [
        (record.key, record.fingerprint, record.seconds_left, Answer(record.status, record.body))
        for record in records
        if record.key and record.status
    ]


def encode_terms(terms: Terms) -> pb.Terms:
    return pb.Terms(
        protocol=terms.protocol,
        node_id=terms.node_id,
        listen=terms.listen,
        framing=terms.framing,
        max_frame=terms.max_frame,
        proxy_protocol=terms.proxy_protocol,
        tls=terms.tls,
        fleet=terms.fleet,
        admin=terms.admin,
        workers=terms.workers,
    )


def decode_terms(terms: pb.Terms) -> Terms:
    return Terms(
        protocol=terms.protocol,
        node_id=terms.node_id,
        listen=terms.listen,
        framing=terms.framing,
        max_frame=terms.max_frame,
        proxy_protocol=terms.proxy_protocol,
        tls=terms.tls,
        fleet=terms.fleet,
        admin=terms.admin,
        workers=terms.workers or 1,
    )


def encode_upstreams(specs: Iterable[UpstreamSpec]) -> list[str]:
    return [orjson.dumps(spec.to_dict()).decode() for spec in specs]


def decode_upstreams(records: Iterable[str]) -> list[UpstreamSpec]:
    try:
        return [UpstreamSpec.from_dict(orjson.loads(record)) for record in records]
    except Exception as error:
        raise HandoffError(Step.HELLO.value, f"a bad upstream record: {error}") from None


def encode_position(position: BusPosition) -> pb.BusPosition:
    if not position.present:
        return pb.BusPosition()
    return pb.BusPosition(
        present=True,
        inbox_last=position.inbox_last,
        fleet_last=position.fleet_last,
        since=position.since,
        inbox_tracks=[_track(p) for p in position.inbox],
        fleet_tracks=[_track(p) for p in position.fleet],
        epoch=position.epoch,
        peers=[_numbering(n) for n in position.peers],
        fleet=_numbering(position.fleet_numbering),
    )


def decode_position(message: pb.BusPosition) -> BusPosition:
    if not message.present:
        return NO_POSITION
    return BusPosition(
        present=True,
        inbox_last=message.inbox_last,
        fleet_last=message.fleet_last,
        since=message.since,
        inbox=tuple(_position(t) for t in message.inbox_tracks),
        fleet=tuple(_position(t) for t in message.fleet_tracks),
        epoch=message.epoch,
        peers=tuple(Numbering(n.node_id, n.seq, n.total) for n in message.peers),
        fleet_numbering=Numbering("", message.fleet.seq, message.fleet.total),
    )


def _track(position: Position) -> pb.Track:
    return pb.Track(
        sender=position.sender, epoch=position.epoch, seq=position.seq, total=position.total
    )


def _position(track: pb.Track) -> Position:
    return Position(track.sender, track.epoch, track.seq, track.total)


def _numbering(numbering: Numbering) -> pb.Numbering:
    return pb.Numbering(node_id=numbering.node_id, seq=numbering.seq, total=numbering.total)
