"""A new process that dies (or hangs) at a chosen step of a hot handoff, for the old
process's failure tests: ``python -m tests.support.handoff_peer PATH STOP NODE-ARGS...``.

It speaks the handoff protocol with the terms the node arguments give (as ``--take-over``
would), then at ``STOP``:
- ``hello``: exits after sending its hello (before reading the offer);
- ``ready``: exits right after saying it is ready (the old process is freezing);
- ``transfer``: exits after the listeners and the first sockets arrived;
- ``done``: exits once everything arrived, before committing;
- ``hang``: stops answering once everything arrived (the old process times out).
It exits with ``os._exit(9)``: the kernel closes every descriptor it received, as when a
process is killed. It prints one line per step reached.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys

from paradoxplex.node.cli.main import build_parser, node_config
from paradoxplex.node.handoff.channel import Channel
from paradoxplex.node.handoff.codec import encode_terms
from paradoxplex.node.handoff.terms import terms_of
from paradoxplex.wire import handoff_pb2 as pb

STOPS = ("hello", "ready", "transfer", "done", "hang")


def say(step: str) -> None:
    print(f"handoff peer: {step}", flush=True)


def die() -> None:
    sys.stdout.flush()
    os._exit(9)


async def run(path: str, stop: str, node_args: list[str]) -> None:
    config = node_config(build_parser().parse_args(["node", *node_args]), {})
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    await loop.sock_connect(sock, path)
    channel = Channel(sock)
    await channel.send(
        pb.Frame(hello=pb.Hello(terms=encode_terms(terms_of(config)), pid=os.getpid()))
    )
    say("hello")
    if stop == "hello":
        die()
    frame, _ = await channel.receive()
    assert frame.WhichOneof("body") == "offer", frame
    await channel.send(pb.Frame(ready=pb.Ready()))
    say("ready")
    if stop == "ready":
        die()
    sessions = 0
    while True:
        frame, _ = await channel.receive()  # descriptors close with this process
        body = frame.WhichOneof("body")
        sessions += len(frame.sessions.items) if body == "sessions" else 0
        if stop == "transfer" and body == "sessions":
            say(f"transfer {sessions}")
            die()
        if body == "done":
            break
    say(f"done {sessions}")
    if stop == "done":
        die()
    await asyncio.sleep(3600)


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[2] not in STOPS:
        raise SystemExit(f"usage: handoff_peer PATH {{{'|'.join(STOPS)}}} NODE-ARGS...")
    asyncio.run(run(sys.argv[1], sys.argv[2], sys.argv[3:]))
