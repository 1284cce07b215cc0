"""The SDK's outbox builds the messages and their acknowledgements (no I/O: nothing is sent
here)."""

from __future__ import annotations

import pytest

from paradoxplex.upstream.outbox import Message, Outbox, Taken
from paradoxplex.wire import upstream_pb2 as pb


@pytest.mark.parametrize(
    ("target", "wire"),
    [
        ("all", pb.BROADCAST_ALL),
        ("active", pb.BROADCAST_ACTIVE),
        ("paused", pb.BROADCAST_NOT_ACTIVE),
        ("inactive", pb.BROADCAST_NOT_ACTIVE),
    ],
)
def test_a_broadcast_target_by_either_word_for_paused(target: str, wire: int) -> None:
    outbox = Outbox()
    assert outbox.broadcast(b"hi", target=target, label="site=a")
    [item] = outbox.items
    assert item.WhichOneof("target") == "broadcast"
    assert item.broadcast == wire
    assert (item.payload, item.broadcast_label) == (b"hi", "site=a")


def test_a_reply_to_the_handled_socket_carries_its_number_and_acknowledges_it() -> None:
    outbox = Outbox()
    handling = outbox.started("sock-a", 7)
    assert outbox.reply("sock-a", b"answer")
    outbox.finished(handling)
    [item] = outbox.items
    assert item.cause_seq == 7
    assert outbox.acks == {}  # the reply is the acknowledgement


@pytest.mark.parametrize("send", ["other socket", "broadcast"])
def test_any_other_reply_puts_the_acknowledgement_beside_it(send: str) -> None:
    outbox = Outbox()
    handling = outbox.started("sock-a", 7)
    if send == "broadcast":
        assert outbox.broadcast(b"to all")
    else:
        assert outbox.reply("sock-b", b"to b")
    assert outbox.acks == {"sock-a": 7}  # taken with the reply
    [item] = outbox.items
    assert item.cause_seq == 0
    outbox.finished(handling)
    assert outbox.acks == {"sock-a": 7}


def test_a_handler_that_sends_nothing_is_acknowledged_when_it_returns() -> None:
    outbox = Outbox()
    handling = outbox.started("sock-a", 3)
    assert outbox.acks == {}
    outbox.finished(handling)
    assert outbox.acks == {"sock-a": 3}
    assert outbox.items == []


def test_a_reply_through_another_streams_outbox_acknowledges_nothing_there() -> None:
    mine, other = Outbox(), Outbox()
    handling = mine.started("sock-a", 4)
    assert other.reply("sock-a", b"elsewhere")
    [item] = other.items
    assert item.cause_seq == 0
    assert other.acks == {}
    mine.finished(handling)
    assert mine.acks == {"sock-a": 4}


def test_a_reply_outside_any_handler_is_plain() -> None:
    outbox = Outbox()
    assert outbox.reply("sock-a", b"later")
    assert outbox.items[0].cause_seq == 0
    assert outbox.acks == {}


def test_a_duplicate_is_acknowledged_and_counted_unrun() -> None:
    outbox = Outbox()
    outbox.duplicate("sock-a", 9)
    assert outbox.acks == {"sock-a": 9}
    assert outbox.duplicates == 1


async def test_take_gives_the_replies_with_their_acknowledgements_at_once() -> None:
    outbox = Outbox()
    handling = outbox.started("sock-a", 1)
    outbox.reply("sock-b", b"r")
    outbox.finished(handling)
    outbox.tell_draining()
    taken = await outbox.take()
    assert taken is not None
    assert [item.payload for item in taken.items] == [b"r"]
    assert taken.acks == {"sock-a": 1}
    assert taken.draining
    assert outbox.empty
    outbox.kick()
    assert await outbox.take() == Taken()  # woken with nothing: an empty take
    outbox.close()
    assert await outbox.take() is None


def test_a_numbered_message_shows_its_delivery_id() -> None:
    request = pb.InputStreamRequest(client_uuid="sock-a", payload=b"p", seq=5, attempt=2)
    message = Message.from_request(request)
    assert (message.seq, message.attempt) == (5, 2)
    assert Message.from_request(pb.InputStreamRequest(client_uuid="s", payload=b"p")).seq == 0
