"""One-shot probes that say in a few words what is wrong: Redis, an upstream, an admin API.

Rules:
- Each probe returns None when all is well, else one short reason ("connection refused",
  "host name not found", "no answer within 3s"); it never raises for the failure it reports.
- Foreign error texts (gRPC's details, redis-py's messages) are translated by
  ``paradoxplex.shared.causes``, as the upstream links' warnings are.
- A URL is shown without its password (``shared.credentials.redact_url``, by the caller).
"""

from __future__ import annotations

import asyncio

import grpc
from google.protobuf import empty_pb2

from paradoxplex.shared.causes import cause_of, grpc_cause
from paradoxplex.wire import upstream_pb2_grpc as pb_grpc

DEFAULT_TIMEOUT = 3.0


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
