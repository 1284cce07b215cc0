"""Redis errors become ``FleetUnavailable`` here, once, and nowhere else.

Rules:
- ``REDIS_DOWN`` is what "Redis is not answering" looks like: any ``RedisError`` and any
  ``OSError`` (the builtin ``TimeoutError`` is one).
- ``edge`` wraps a coroutine method: those errors leave it as ``FleetUnavailable(reason)``.
- A cancellation is never turned into an error: redis-py can surface a cancel that lands in
  its own socket timeout as a ``TimeoutError``; when the task is being cancelled, that becomes
  ``CancelledError`` again (otherwise callers' retry loops swallow the cancel and spin).
- A reason is the exception's type and at most 200 characters of its text, on one line.
- At start-up a Redis failure is no outage but a setting to fix: ``refused(exc, target)`` says
  which (wrong password, no password, TLS trust, refused, timeout, ACL, read-only replica)
  in one ``ConfigError`` naming the setting, the URL always redacted. Through Sentinel, when
  no sentinel names a master (``sentinel.NoMaster``), it says why: no sentinel answers (and
  what each said), a sentinel refused its login, one is no sentinel, none knows the service
  name, or they see the master down.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import ssl
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from redis.exceptions import (
    AuthenticationError,
    InvalidResponse,
    NoPermissionError,
    ReadOnlyError,
    RedisError,
    ResponseError,
)
from redis.exceptions import TimeoutError as RedisTimeoutError

from paradoxplex.node.fleet.redis.sentinel import NoMaster
from paradoxplex.shared.credentials import redact_url, url_user
from paradoxplex.shared.errors import ConfigError, FleetUnavailable

__all__ = [
    "REDIS_DOWN",
    "Target",
    "cancel_requested",
    "edge",
    "reason",
    "refused",
    "unavailable",
]

P = ParamSpec("P")
R = TypeVar("R")

#: What "Redis is not answering" looks like (builtin TimeoutError is an OSError).
REDIS_DOWN: tuple[type[Exception], ...] = (RedisError, OSError)


def reason(exc: BaseException) -> str:
    """A short, one-line account of a Redis failure."""
    text = " ".join(str(exc).split()) or "no detail"
    return f"{type(exc).__name__}: {text[:200]}"


def cancel_requested() -> bool:
    """True when the current task is being cancelled."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def unavailable(exc: BaseException) -> BaseException:
    """What to raise instead of ``exc`` (one of ``REDIS_DOWN``): the cancel, or the fleet error."""
    if cancel_requested():
        return asyncio.CancelledError()
    return FleetUnavailable(reason(exc))


def edge(method: Callable[P, Awaitable[R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    """Translate Redis and socket errors into ``FleetUnavailable``, once."""

    @functools.wraps(method)
    async def translated(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await method(*args, **kwargs)
        except REDIS_DOWN as exc:
            raise unavailable(exc) from exc

    return translated


# -- start-up ----------------------------------------------------------------------------

NO_PASSWORD_HINT = "give it in the URL, in PARADOXPLEX_REDIS, or with --redis-password-file"


@dataclass(frozen=True, slots=True)
class Target:
    """What a start-up message names: the URL (only ever shown redacted), the key prefix, the
    setting the password came from, and the client's timeout."""

    url: str
    prefix: str
    password_setting: str = "--redis"
    timeout: float = 2.0

    @property
    def user(self) -> str:
        return url_user(self.url)

    def __repr__(self) -> str:
        return f"<Target {redact_url(self.url)} prefix={self.prefix!r}>"


def refused(
    exc: BaseException, target: Target, *, command: str | None = None, verb: str = "write"
) -> ConfigError:
    """Why Redis will not serve this node, as one line naming the setting to fix.

    ``command`` is what was refused, when known; ``verb`` (``read`` or ``write``) what it
    does to keys.
    """
    if isinstance(exc, NoMaster):
        return ConfigError("--redis", f"cannot reach {redact_url(target.url)}: {_no_master(exc)}")
    if isinstance(exc, ReadOnlyError):
        return ConfigError("--redis", "the server is a read-only replica; give the master's URL")
    if isinstance(exc, NoPermissionError):
        denied = _denied(exc, target.prefix, command or "a command the node needs", verb)
        on = f"{command}: " if command else ""
        return ConfigError("--redis", f'user "{target.user}" may not {denied} ({on}{_detail(exc)})')
    if isinstance(exc, ResponseError) and str(exc).lower().startswith("unknown command"):
        return ConfigError(
            "--redis",
            f"the server does not know {command or 'a command the node needs'} "
            f"(a Redis too old, or the command renamed): {_detail(exc)}",
        )
    if isinstance(exc, AuthenticationError) and _code(exc) != "NOAUTH":
        return ConfigError(
            target.password_setting,
            f"cannot reach {redact_url(target.url)}: wrong password or user ({_detail(exc)})",
        )
    return ConfigError("--redis", f"cannot reach {redact_url(target.url)}: {_cause(exc, target)}")


def _no_master(exc: NoMaster) -> str:
    """Why no sentinel named a master for the service."""
    service = exc.service
    for where, error in exc.failed:
        if isinstance(error, AuthenticationError) or _code(error) == "NOAUTH":
            return (
                f"sentinel {where} refused the login: give or correct the URL's "
                f"sentinel_password= ({_detail(error)})"
            )
        if isinstance(error, ResponseError) and "unknown command" in str(error).lower():
            return f"{where} is no sentinel (it does not know SENTINEL): give the sentinels' ports"
    if exc.down_at:
        return (
            f"the sentinels see the master of {service!r} down ({', '.join(exc.down_at)}); "
            "a failover may be under way"
        )
    if exc.unknown_at:
        return (
            f"no sentinel knows the service {service!r} (asked {', '.join(exc.unknown_at)}): "
            "check the name after the hosts"
        )
    said = "; ".join(f"{where}: {_said(error)}" for where, error in exc.failed)
    return f"no sentinel answers ({said or 'none given'})"


def _said(error: BaseException) -> str:
    """What one sentinel's failure was, in a few words."""
    for link in _causes(error):
        if isinstance(link, ConnectionRefusedError) or "Connection refused" in str(link):
            return "connection refused"
        if isinstance(link, RedisTimeoutError | TimeoutError):
            return "no answer (timeout)"
        if isinstance(link, socket.gaierror):
            return f"cannot resolve its host name ({link.strerror})"
    return reason(error)


def _code(exc: BaseException) -> str:
    return str(getattr(exc, "status_code", None) or "")


_PIPELINE = " of pipeline caused error: "


def _detail(exc: BaseException) -> str:
    """``NOPERM this user has no permissions …``: the server's code and words, one line
    (a pipeline's ``Command # 1 (HSET k …) of pipeline caused error: (…)`` becomes
    ``HSET: NOPERM …``: the command's name, never its arguments)."""
    text = " ".join(str(exc).split())
    command = ""
    if _PIPELINE in text:
        head, _, text = text.partition(_PIPELINE)
        command = head.partition("(")[2].split(" ", 1)[0].rstrip(")") + ": "
        text = text.strip("()'\",")
    return f"{command}{_code(exc)} {text[:200]}".strip()


def _denied(exc: NoPermissionError, prefix: str, command: str, verb: str) -> str:
    text = str(exc).lower()
    if "channel" in text:
        return f'use channels under prefix "{prefix}"'
    if "key" in text:
        return f'{verb} keys under prefix "{prefix}"'
    return f"run {command}"


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it wraps (redis-py raises its own errors inside an OSError's handler)."""
    seen: BaseException | None = exc
    for _ in range(8):  # bounded: a chain is short, and could loop
        if seen is None:
            return
        yield seen
        seen = seen.__cause__ or seen.__context__


def _cause(exc: BaseException, target: Target) -> str:
    """What went wrong on the way to a first answer."""
    for link in _causes(exc):
        if isinstance(link, ssl.SSLCertVerificationError):
            found = getattr(link, "verify_message", None) or "untrusted"
            return (
                f"TLS certificate verify failed ({found}); "
                "trust the server's CA with ?ssl_ca_certs=FILE in the URL"
            )
        if isinstance(link, ssl.SSLError):
            return f"TLS handshake failed ({getattr(link, 'reason', None) or link.strerror})"
        if isinstance(link, ConnectionRefusedError):
            return "connection refused"
        if isinstance(link, socket.gaierror):
            return f"cannot resolve its host name ({link.strerror})"
    if _code(exc) == "NOAUTH":
        return f"the server needs a password (NOAUTH): {NO_PASSWORD_HINT}"
    if isinstance(exc, RedisTimeoutError | TimeoutError):
        tls = "; does that port speak TLS?" if target.url.lower().startswith("rediss") else ""
        return f"no answer within {target.timeout:g} s (timeout{tls})"
    if isinstance(exc, InvalidResponse):
        return f"it does not speak the Redis protocol ({_detail(exc)})"
    return reason(exc)
