"""One-shot probes that say in a few words what is wrong: Redis, an upstream, an admin API.

Rules:
- Each probe returns None when all is well, else one short reason ("connection refused",
  "host name not found", "no answer within 3s"); it never raises for the failure it reports.
- Foreign error texts (gRPC's details, redis-py's messages) are translated here, once; the
  upstream links use ``grpc_cause`` for their warnings too.
- A URL is shown without its password (``redact``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import urllib.parse
from collections.abc import Iterator

import grpc
from google.protobuf import empty_pb2

from paradoxplex.shared.config import Address
from paradoxplex.shared.errors import ConfigError
from paradoxplex.wire import upstream_pb2_grpc as pb_grpc

DEFAULT_TIMEOUT = 3.0
# (what a foreign message says, what we say), first match wins; compared in lower case.
CAUSES = (
    ("connection refused", "connection refused"),
    ("connect call failed", "connection refused"),
    ("lookup", "host name not found"),
    ("resolv", "host name not found"),
    ("name or service not known", "host name not found"),
    ("no address associated", "host name not found"),
    ("connection reset", "connection reset"),
    ("no route to host", "no route to host"),
    ("network is unreachable", "network unreachable"),
    ("timed out", "connect timed out"),
    ("timeout", "connect timed out"),
    ("ssl", "TLS handshake failed"),
    ("authentication", "authentication failed"),
    ("noauth", "authentication required"),
    ("wrongpass", "wrong password"),
)


def cause_of(text: str) -> str | None:
    """The known cause a foreign error text names, or None."""
    lowered = text.lower()
    return next((ours for theirs, ours in CAUSES if theirs in lowered), None)


def grpc_cause(code: str, details: str, *, timeout: float) -> str:
    """Why a gRPC call failed, in words: ``code`` is the status name, ``details`` its text."""
    if code == "DEADLINE_EXCEEDED":
        return f"no answer within {timeout:g}s"
    if code == "UNIMPLEMENTED":
        return "not an upstream (the ready RPC is unimplemented)"
    return cause_of(details) or f"{code.lower()}: {details}"


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***``."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


async def upstream_problem(
    address: str,
    *,
    within: float = DEFAULT_TIMEOUT,
    credentials: grpc.ChannelCredentials | None = None,
) -> str | None:
    """None when the upstream at ``address`` answers ``ready`` with ready=true (over TLS
    with ``credentials``)."""
    channel = (
        grpc.aio.insecure_channel(address)
        if credentials is None
        else grpc.aio.secure_channel(address, credentials)
    )
    async with channel:
        stub = pb_grpc.UpstreamPeerServiceStub(channel)
        try:
            answer = await stub.ready(empty_pb2.Empty(), timeout=within)
        except grpc.aio.AioRpcError as error:
            return grpc_cause(error.code().name, error.details() or "", timeout=within)
    return None if answer.ready else "answered ready=false"


async def redis_problem(url: str, *, within: float = DEFAULT_TIMEOUT) -> str | None:
    """None when the Redis at ``url`` answers PING."""
    import redis.asyncio
    import redis.exceptions

    client = redis.asyncio.Redis.from_url(url, socket_connect_timeout=within, socket_timeout=within)
    try:
        async with asyncio.timeout(within):
            await client.ping()
    except TimeoutError:
        return f"no answer within {within:g}s"
    except (redis.exceptions.RedisError, OSError) as error:
        return cause_of(str(error)) or str(error) or type(error).__name__
    finally:
        await client.aclose()
    return None


async def admin_problem(
    url: str, *, within: float = DEFAULT_TIMEOUT, ca: str | None = None
) -> str | None:
    """None when the admin API at ``url`` answers ``/livez`` with 200. Over ``https://`` the
    certificate is checked against ``ca`` when given, else not (a probe sends no token)."""
    from paradoxplex.admin.client import AdminAPIError, AdminClient, AdminUnreachable

    try:
        async with AdminClient(url, timeout=within, ca=ca, verify=ca is not None) as client:
            await client.livez()
    except AdminUnreachable as error:
        return error.reason
    except AdminAPIError as error:
        return f"/livez answered {error.status}"
    return None


@contextlib.contextmanager
def naming(flag: str, address: Address) -> Iterator[None]:
    """Turn an OSError of binding ``address`` into a ConfigError naming the setting."""
    try:
        yield
    except OSError as error:
        reason = os.strerror(error.errno) if error.errno else str(error)
        reason = reason.lower()
        raise ConfigError(flag, f"cannot listen on {address}: {reason}") from None


def reachable_host(host: str) -> str:
    """An address other hosts can reach for a listener bound to ``host``: a wildcard
    becomes this machine's address (its host name's, else loopback)."""
    if host not in ("0.0.0.0", "::", ""):
        return host
    try:
        found = socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"
    return found
