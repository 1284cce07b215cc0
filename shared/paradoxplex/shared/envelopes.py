"""Bus envelopes between nodes: protobuf ``paradoxplex.bus.Envelope``, binary payloads."""

from __future__ import annotations

from paradoxplex.shared.sessions import BroadcastTarget
from paradoxplex.wire import bus_pb2


def deliver_batch(sender: str, items: list[tuple[str, bytes]], *, sent_at: float = 0.0) -> bytes:
    """Many replies for one node in one envelope, in order; ``sent_at`` is the sender's clock."""
    batch = bus_pb2.DeliverBatch()
    add = batch.items.add
    for client_uuid, payload in items:
        add(client_uuid=client_uuid, payload=payload)
    return bus_pb2.Envelope(sender=sender, deliver_batch=batch, sent_at=sent_at).SerializeToString()


def label_to_wire(label: tuple[str, str] | None) -> str:
    """A label filter as the wire carries it: ``key=value``, or empty for none."""
    return f"{label[0]}={label[1]}" if label else ""


def label_from_wire(text: str) -> tuple[str, str] | None:
    """The inverse of ``label_to_wire`` (also for upstreams' ``broadcast_label``)."""
    if not text:
        return None
    key, _, value = text.partition("=")
    return key, value


def broadcast(
    sender: str,
    target: BroadcastTarget,
    label: tuple[str, str] | None,
    payload: bytes,
    *,
    sent_at: float = 0.0,
) -> bytes:
    body = bus_pb2.Broadcast(target=target.value, label=label_to_wire(label), payload=payload)
    return bus_pb2.Envelope(sender=sender, broadcast=body, sent_at=sent_at).SerializeToString()


def command(
    sender: str,
    request_id: str,
    action: str,
    client_uuid: str,
    *,
    payload: bytes = b"",
    labels: dict[str, str] | None = None,
    deadline: float = 0.0,
) -> bytes:
    body = bus_pb2.Command(
        request_id=request_id,
        action=action,
        client_uuid=client_uuid,
        payload=payload,
        labels=labels or {},
        deadline=deadline,
    )
    return bus_pb2.Envelope(sender=sender, command=body).SerializeToString()


def reply(
    sender: str, request_id: str, status: str, body: bytes = b"", *, replayed: bool = False
) -> bytes:
    answer = bus_pb2.CommandReply(
        request_id=request_id, status=status, body=body, replayed=replayed
    )
    return bus_pb2.Envelope(sender=sender, reply=answer).SerializeToString()


def control(sender: str, action: str, upstream_id: str = "", *, node_id: str = "") -> bytes:
    body = bus_pb2.Control(action=action, upstream_id=upstream_id, node_id=node_id)
    return bus_pb2.Envelope(sender=sender, control=body).SerializeToString()


def parse(data: bytes) -> bus_pb2.Envelope:
    """Decode an envelope; raises ``google.protobuf.message.DecodeError`` on garbage."""
    envelope = bus_pb2.Envelope()
    envelope.ParseFromString(data)
    return envelope
