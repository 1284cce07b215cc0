"""A small SDK upstream for the poison-message test: it echoes every line, except that a payload
containing ``POISON`` kills the process at once (``os._exit``: a crash, no drain).

Usage: ``python -m tests.e2e.poison_upstream --listen HOST:PORT``; prints
``upstream-echo listening on HOST:PORT`` once it serves (the echo's line, so the helpers that
parse it work).
"""

from __future__ import annotations

import argparse
import asyncio
import os

from paradoxplex.upstream import Message, Outbox, UpstreamServer

POISON = b"POISON"


def handle(message: Message, out: Outbox) -> None:
    if message.event:
        return
    if POISON in message.payload:
        os._exit(3)
    out.reply(message.client_uuid, message.payload)


async def serve(listen: str) -> None:
    server = UpstreamServer(handle)
    port = await server.start(listen)
    print(f"upstream-echo listening on {listen.rpartition(':')[0]}:{port}", flush=True)
    await server.run()


def main() -> None:
    parser = argparse.ArgumentParser(description="an echo upstream that dies on POISON")
    parser.add_argument("--listen", required=True, help="HOST:PORT")
    asyncio.run(serve(parser.parse_args().listen))


if __name__ == "__main__":
    main()
