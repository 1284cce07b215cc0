"""Write a paradoxplex upstream in a few lines.

    from paradoxplex.upstream import Message, Outbox, UpstreamServer

    def handle(message: Message, out: Outbox) -> None:
        out.reply(message.client_uuid, b"got " + message.payload)

    asyncio.run(UpstreamServer(handle).serve("127.0.0.1:45888"))

``ready`` and ``live`` are answered for you; both the original ``bidirectionalStreaming``
RPC and the batched fast path are served, and the handler sees the same ``Message`` either
way. A handler may be a plain function or a coroutine function. Replies go back on the
stream the message came from; ``Outbox.broadcast`` reaches sockets on every node.

TLS: ``start(address, credentials=server_credentials(cert, key, client_ca))`` serves TLS
(and, with ``client_ca``, requires the node's client certificate).

Limits: each stream buffers at most ``max_pending`` replies (default 10,000); a handler that
outruns the node waits (coroutine handlers) or sees ``OutboxFull`` (plain ones).

Delivery (the batch path): messages are acknowledged for you (a reply to the message's socket
from its handler, or the handler returning), a redelivery of a message already finished here
is not run again (``Message.seq``/``attempt`` show the delivery id), and replies are kept until
the node takes them. ``serve()`` (and ``run()`` after ``start()``) drain on SIGTERM or SIGINT:
no new message, the running handlers finish and are answered, the rest goes back to the node
for another upstream, within ``grace`` seconds (10); then they return.
"""

from paradoxplex.upstream.server import (
    Handler,
    Message,
    Outbox,
    OutboxFull,
    UpstreamServer,
    server_credentials,
)

__all__ = ["Handler", "Message", "Outbox", "OutboxFull", "UpstreamServer", "server_credentials"]
