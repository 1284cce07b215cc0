"""An upstream for the cross-node case: replies leave on another node's stream.

    python -m bench.cross_upstream --listen HOST:PORT --mode cross|local

Nodes A and B both link to this one upstream (with ``--redis`` the upstream registry is
fleet-wide, so an upstream given to one node is linked by every node: a "U_A only for A"
split cannot be expressed). Each node's streams share one HTTP/2 connection, so the gRPC
peer address tells the nodes apart. In ``cross`` mode a message is answered on a stream of
a *different* peer (round robin over them): node B receives a reply for a socket that node
A holds and has to route it through the fleet (Redis). In ``local`` mode it is answered on
the stream it came from: the same process and code otherwise, for an apples-to-apples
baseline.

A reply waits (the handler is a coroutine) while no other node has a stream open, or while
the chosen outbox is full; replies are never dropped here.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
from collections.abc import AsyncIterator
from typing import Any

from paradoxplex.upstream import Message, Outbox, UpstreamServer
from paradoxplex.wire import upstream_pb2 as pb

PEER: contextvars.ContextVar[str] = contextvars.ContextVar("peer", default="")


class Streams:
    """The outboxes of the open data streams, each with its peer (one peer per node)."""

    def __init__(self) -> None:
        self.peers: dict[Outbox, str] = {}
        self.turn = 0
        self.changed = asyncio.Event()

    def add(self, box: Outbox, peer: str) -> None:
        self.peers[box] = peer
        self.changed.set()

    def remove(self, box: Outbox) -> None:
        self.peers.pop(box, None)

    async def other_than(self, box: Outbox) -> Outbox:
        """An outbox of another peer than ``box``'s (waits until one is open)."""
        mine = self.peers.get(box)
        while True:
            others = [other for other, peer in self.peers.items() if peer != mine]
            if others:
                self.turn = (self.turn + 1) % len(others)
                return others[self.turn]
            self.changed.clear()
            await self.changed.wait()

    def __repr__(self) -> str:
        return f"<Streams open={len(self.peers)} peers={len(set(self.peers.values()))}>"


class CrossServer(UpstreamServer):
    """Answers on another node's stream (``cross``) or on the incoming one (``local``)."""

    def __init__(self, *, cross: bool) -> None:
        super().__init__(self.answer)
        self.cross = cross
        self.streams = Streams()

    async def answer(self, message: Message, out: Outbox) -> None:
        if message.event:
            return
        box = await self.streams.other_than(out) if self.cross else out
        await box.room()
        box.reply(message.client_uuid, message.payload)

    def stream_started(self, outbox: Outbox) -> None:
        self.streams.add(outbox, PEER.get())

    def stream_ended(self, outbox: Outbox) -> None:
        self.streams.remove(outbox)

    # ``stream_started`` is called inside these generators: it sees the peer set here.

    async def batchStreaming(
        self, request_iterator: AsyncIterator[pb.InputBatch], context: Any
    ) -> AsyncIterator[pb.OutputBatch]:
        PEER.set(str(context.peer()))
        async for batch in super().batchStreaming(request_iterator, context):
            yield batch

    async def bidirectionalStreaming(
        self, request_iterator: AsyncIterator[pb.InputStreamRequest], context: Any
    ) -> AsyncIterator[pb.OutputStreamRequest]:
        PEER.set(str(context.peer()))
        async for item in super().bidirectionalStreaming(request_iterator, context):
            yield item


async def serve(listen: str, *, cross: bool) -> None:
    server = CrossServer(cross=cross)
    port = await server.start(listen)
    print(f"cross-upstream listening on {port} ({'cross' if cross else 'local'})", flush=True)
    try:
        assert server.server is not None
        await server.server.wait_for_termination()
    finally:
        await server.stop(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--listen", required=True, help="HOST:PORT")
    parser.add_argument("--mode", choices=("cross", "local"), default="cross")
    args = parser.parse_args()
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.listen, cross=args.mode == "cross"))


if __name__ == "__main__":
    main()
