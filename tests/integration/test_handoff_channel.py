"""The handoff channel over a real Unix socket pair: frames in order, each with its file
descriptors, many at once; the descriptors are the same kernel sockets; what is not a
paradoxplex frame, or a peer that leaves, is an error, not a hang."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from paradoxplex.node.handoff.channel import MAX_FDS, Channel, ChannelClosed, peer_uid
from paradoxplex.shared.errors import HandoffError
from paradoxplex.wire import handoff_pb2 as pb


@pytest_asyncio.fixture
async def pair() -> AsyncIterator[tuple[Channel, Channel]]:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    one, other = Channel(left), Channel(right)
    yield one, other
    one.close()
    other.close()


async def test_frames_arrive_in_order_with_their_descriptors(
    pair: tuple[Channel, Channel],
) -> None:
    sender, receiver = pair
    tcp = [socket.socketpair() for _ in range(MAX_FDS + 10)]
    big = pb.Frame(done=pb.Done(replies=[os.urandom(300_000) for _ in range(4)]))

    async def send() -> None:
        await sender.send(pb.Frame(ready=pb.Ready(incarnation="i2")))
        await sender.send(pb.Frame(sessions=pb.Sessions()), [a.fileno() for a, _ in tcp[:MAX_FDS]])
        await sender.send(big, [a.fileno() for a, _ in tcp[MAX_FDS:]])

    sending = asyncio.ensure_future(send())  # more than the socket buffer: both at once
    try:
        frame, fds = await receiver.receive()
        assert (frame.ready.incarnation, fds) == ("i2", [])
        frame, fds = await receiver.receive()
        assert frame.WhichOneof("body") == "sessions"
        assert len(fds) == MAX_FDS
        frame, more = await receiver.receive()
        await sending
        assert frame.done.replies == big.done.replies
        assert len(more) == 10
        for fd, (_, peer) in zip(fds + more, tcp, strict=True):
            with socket.socket(fileno=fd) as received:  # the same kernel socket
                received.sendall(b"through the copy")
                assert peer.recv(100) == b"through the copy"
    finally:
        sending.cancel()
        for a, b in tcp:
            a.close()
            b.close()


async def test_too_many_descriptors_for_one_frame_is_refused(
    pair: tuple[Channel, Channel],
) -> None:
    with pytest.raises(ValueError, match="at most"):
        await pair[0].send(pb.Frame(), [0] * (MAX_FDS + 1))


async def test_a_peer_that_leaves_is_channel_closed(pair: tuple[Channel, Channel]) -> None:
    sender, receiver = pair
    sender.close()
    with pytest.raises(ChannelClosed):
        async with asyncio.timeout(5):
            await receiver.receive()


async def test_what_is_not_a_frame_is_an_error() -> None:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    receiver = Channel(right)
    try:
        left.sendall(b"GET / HTTP/1.1\r\n\r\n")
        with pytest.raises(HandoffError, match="not a paradoxplex node"):
            async with asyncio.timeout(5):
                await receiver.receive()
    finally:
        left.close()
        receiver.close()


async def test_the_peer_is_this_user(pair: tuple[Channel, Channel]) -> None:
    assert peer_uid(pair[0].sock) == os.getuid()
