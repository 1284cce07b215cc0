"""The SDK's reply channels: one stream per node incarnation, replies numbered and kept, the
oldest forgotten past the bound, a superseded stream's replies handed on (no I/O: the
streams are stand-ins holding real outboxes)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from paradoxplex.upstream.channels import Channel, ReplyChannels
from paradoxplex.upstream.outbox import Outbox, Taken
from paradoxplex.wire import upstream_pb2 as pb


@dataclass
class Stream:
    """What a channel sees of a batch stream."""

    channel: Channel | None = None
    superseded: bool = False
    draining: bool = False
    outbox: Outbox = field(default_factory=Outbox)
    consumer: asyncio.Task[None] | None = None


def joined(channels: ReplyChannels, channel_id: str, stream: Stream) -> Channel:
    """As a stream's probe does: attach, and remember the channel."""
    stream.channel = channels.attach(channel_id, stream)
    return stream.channel


def replies(*payloads: bytes) -> list[pb.OutputStreamRequest]:
    return [pb.OutputStreamRequest(client_uuid="sock", payload=p) for p in payloads]


def test_a_new_stream_of_a_channel_supersedes_the_old_and_keeps_what_it_had_not_sent() -> None:
    channels = ReplyChannels("origin", max_pending=10)
    old, new = Stream(), Stream()
    channel = joined(channels, "node-a", old)
    old.outbox.items = replies(b"1", b"2")
    assert channels.attach("node-a", new) is channel
    assert old.superseded
    assert old.channel is None
    assert old.outbox.items == []
    assert channel.stream is new
    assert [(first, [i.payload for i in items]) for first, items in channel.ledger.unacked()] == [
        (1, [b"1", b"2"])
    ]
    assert channel.origin.startswith("origin.")


def test_numbers_run_on_per_channel_and_past_the_bound_the_oldest_are_not_kept() -> None:
    channels = ReplyChannels("origin", max_pending=3)
    stream = Stream()
    channel = channels.attach("node-a", stream)
    assert channels.number(channel, replies(b"1", b"2")) == 1
    assert channels.number(channel, replies(b"3", b"4")) == 3
    assert (len(channel.ledger), channels.unkept) == (3, 1)
    other = channels.attach("node-b", Stream())
    assert channels.number(other, replies(b"x")) == 1  # each channel its own numbers
    assert other.origin != channel.origin


def test_a_superseded_streams_last_replies_go_to_a_stream_that_serves_now() -> None:
    channels = ReplyChannels("origin", max_pending=10)
    old, new = Stream(), Stream()
    channels.attach("node-a", old)
    channels.attach("node-a", new)
    channels.pass_on(old, Taken(replies(b"late")))
    assert [item.payload for item in new.outbox.items] == [b"late"]


async def test_an_ended_stream_leaves_its_unsent_replies_kept_for_the_next() -> None:
    channels = ReplyChannels("origin", max_pending=10)
    stream = Stream()
    channel = joined(channels, "node-a", stream)
    stream.outbox.items = replies(b"unsent")
    channels.detach(stream)
    assert (channel.stream, stream.outbox.items, len(channel.ledger)) == (None, [], 1)
    again = Stream()
    assert channels.attach("node-a", again) is channel
    assert [first for first, _ in channel.ledger.unacked()] == [1]


def test_a_stream_superseded_already_does_not_give_its_channel_up_when_it_ends() -> None:
    channels = ReplyChannels("origin", max_pending=10)
    old, new = Stream(), Stream()
    joined(channels, "node-a", old)
    channel = joined(channels, "node-a", new)
    channels.detach(old)
    assert channel.stream is new
    assert repr(channels) == "<ReplyChannels channels=1 rerouted=0 lost=0 unkept=0>"
