"""``paradoxplex upstream-echo``: sends each payload back, unchanged, to its sender."""

from __future__ import annotations

import asyncio
import logging
import signal

from paradoxplex.upstream import Message, Outbox, UpstreamServer

log = logging.getLogger("paradoxplex.upstream")


class Echo:
    """The echo handler; with ``broadcast_every`` N, every Nth payload is also broadcast."""

    def __init__(self, *, broadcast_every: int = 0) -> None:
        self.broadcast_every = broadcast_every
        self.count = 0

    def __call__(self, message: Message, out: Outbox) -> None:
        if message.event:
            log.info(
                "socket %s %s (%s)", message.client_uuid, message.event, message.remote_address
            )
            return
        out.reply(message.client_uuid, message.payload)
        self.count += 1
        if self.broadcast_every and self.count % self.broadcast_every == 0:
            out.broadcast(message.payload)


async def run_echo(listen: str, *, broadcast_every: int = 0, batch: bool = True) -> None:
    server = UpstreamServer(Echo(broadcast_every=broadcast_every), batch=batch)
    port = await server.start(listen)
    host = listen.rpartition(":")[0]
    print(f"upstream-echo listening on {host}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server.stop(0.5)


def main_echo(listen: str, *, broadcast_every: int = 0, batch: bool = True) -> None:
    asyncio.run(run_echo(listen, broadcast_every=broadcast_every, batch=batch))
