"""``paradoxplex upstream-echo``: sends each payload back, unchanged, to its sender.

SIGTERM or SIGINT drains it (``UpstreamServer.run``): it takes no new message, finishes and
answers what it runs, hands back the rest to the node, and exits 0 within ``--grace``
seconds (10).
"""

from __future__ import annotations

import asyncio
import logging

import grpc

from paradoxplex.node.tls import CERTIFICATE, PRIVATE_KEY, TlsFiles, read_pem
from paradoxplex.shared.errors import ConfigError
from paradoxplex.upstream import Message, Outbox, UpstreamServer, server_credentials
from paradoxplex.upstream.server import DEFAULT_GRACE

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
    grace: float = DEFAULT_GRACE,
    acks: bool = True,
) -> None:
    server = UpstreamServer(
        Echo(broadcast_every=broadcast_every), batch=batch, acks=acks, grace=grace
    )
    port = await server.start(listen, credentials=credentials)
    host = listen.rpartition(":")[0]
    scheme = " (tls)" if credentials is not None else ""
    print(f"upstream-echo listening on {host}:{port}{scheme}", flush=True)
    await server.run()


def main_echo(
    listen: str,
    *,
    broadcast_every: int = 0,
    batch: bool = True,
    credentials: grpc.ServerCredentials | None = None,
    grace: float = DEFAULT_GRACE,
    acks: bool = True,
) -> None:
    asyncio.run(
        run_echo(
            listen,
            broadcast_every=broadcast_every,
            batch=batch,
            credentials=credentials,
            grace=grace,
            acks=acks,
        )
    )
