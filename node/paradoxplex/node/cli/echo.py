"""``paradoxplex upstream-echo``: sends each payload back, unchanged, to its sender."""

from __future__ import annotations

import asyncio
import logging
import signal

import grpc

from paradoxplex.node.tls import CERTIFICATE, PRIVATE_KEY, TlsFiles, read_pem
from paradoxplex.shared.errors import ConfigError
from paradoxplex.upstream import Message, Outbox, UpstreamServer, server_credentials

log = logging.getLogger("paradoxplex.upstream")


class Echo:
    """The echo handler; with ``broadcast_every`` N, every Nth payload is also broadcast."""

    def __init__(self, *, broadcast_every: int = 0) -> None:
        self.broadcast_every = broadcast_every
        self.count = 0

    def __call__(self, message: Message, out: Outbox) -> None:
        if message.event:
            because = f"; {message.reason}" if message.reason else ""
            log.info(
                "socket %s %s (%s%s)",
                message.client_uuid,
                message.event,
                message.remote_address,
                because,
            )
            return
        out.reply(message.client_uuid, message.payload)
        self.count += 1
        if self.broadcast_every and self.count % self.broadcast_every == 0:
            out.broadcast(message.payload)


def echo_credentials(
    cert: str | None, key: str | None, client_ca: str | None
) -> grpc.ServerCredentials | None:
    """TLS for ``upstream-echo --tls-cert/--tls-key [--tls-client-ca]``; None: plain."""
    if cert is None and key is None and client_ca is None:
        return None
    if cert is None or key is None:
        raise ConfigError("--tls-cert" if cert is None else "--tls-key", "needs both files")
    TlsFiles(cert, key, client_ca).check()
    return server_credentials(
        read_pem("--tls-cert", cert, CERTIFICATE),
        read_pem("--tls-key", key, PRIVATE_KEY),
        read_pem("--tls-client-ca", client_ca, CERTIFICATE) if client_ca else None,
    )


async def run_echo(
    listen: str,
    *,
    broadcast_every: int = 0,
    batch: bool = True,
    credentials: grpc.ServerCredentials | None = None,
) -> None:
    server = UpstreamServer(Echo(broadcast_every=broadcast_every), batch=batch)
    port = await server.start(listen, credentials=credentials)
    host = listen.rpartition(":")[0]
    scheme = " (tls)" if credentials is not None else ""
    print(f"upstream-echo listening on {host}:{port}{scheme}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server.stop(0.5)


def main_echo(
    listen: str,
    *,
    broadcast_every: int = 0,
    batch: bool = True,
    credentials: grpc.ServerCredentials | None = None,
) -> None:
    asyncio.run(
        run_echo(listen, broadcast_every=broadcast_every, batch=batch, credentials=credentials)
    )
