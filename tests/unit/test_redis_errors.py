"""How a Redis refusal at start-up is worded: one line, the cause, the setting, no password.

The exceptions are the ones redis-py raises (built here as it builds them, no I/O)."""

from __future__ import annotations

import socket
import ssl

import pytest
from redis.exceptions import (
    AuthenticationError,
    InvalidResponse,
    NoPermissionError,
    ReadOnlyError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from paradoxplex.node.fleet.redis.errors import Target, reason, refused

URL = "redis://u:hunter2@r:6379/0"
SHOWN = "redis://u:***@r:6379/0"
TARGET = Target(URL, "pp")


def wrapping(outer: BaseException, inner: BaseException) -> BaseException:
    """``outer`` raised while handling ``inner``, as redis-py raises its ConnectionError."""
    try:
        try:
            raise inner
        except BaseException:
            raise outer from None
    except BaseException as caught:
        caught.__context__ = inner
        return caught


def certificate_error() -> ssl.SSLCertVerificationError:
    error = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] …")
    error.verify_message = "self-signed certificate"
    return error


KEYS = "this user has no permissions to access one of the keys used as arguments"
CHANNELS = "this user has no permissions to access one of the channels used as arguments"
COMMAND = "this user has no permissions to run the 'xadd' command"
UNKNOWN = "unknown command `XADD`, with args beginning with:"
WRONGPASS = "invalid username-password pair or user is disabled."
PROTOCOL = 'Protocol error, got "H" as reply type byte'
REACH = f"cannot reach {SHOWN}: "


def connection_error(inner: BaseException) -> BaseException:
    return wrapping(RedisConnectionError("Error connecting to r:6379."), inner)


# (id, what redis-py raised, the setting named, the message)
CASES: list[tuple[str, BaseException, str, str]] = [
    ("read-only", ReadOnlyError("You can't write…", status_code="READONLY"), "--redis",
     "the server is a read-only replica; give the master's URL"),
    ("noperm-keys", NoPermissionError(KEYS, status_code="NOPERM"), "--redis",
     f'user "u" may not write keys under prefix "pp" (SET: NOPERM {KEYS})'),
    ("noperm-channels", NoPermissionError(CHANNELS, status_code="NOPERM"), "--redis",
     f'user "u" may not use channels under prefix "pp" (SET: NOPERM {CHANNELS})'),
    ("noperm-command", NoPermissionError(COMMAND, status_code="NOPERM"), "--redis",
     f'user "u" may not run SET (SET: NOPERM {COMMAND})'),
    ("unknown-command", ResponseError(UNKNOWN), "--redis",
     f"the server does not know SET (a Redis too old, or the command renamed): {UNKNOWN}"),
    ("wrongpass", AuthenticationError(WRONGPASS, status_code="WRONGPASS"), "--redis",
     f"{REACH}wrong password or user (WRONGPASS {WRONGPASS})"),
    ("noauth", AuthenticationError("Authentication required.", status_code="NOAUTH"), "--redis",
     f"{REACH}the server needs a password (NOAUTH): "
     "give it in the URL, in PARADOXPLEX_REDIS, or with --redis-password-file"),
    ("untrusted", connection_error(certificate_error()), "--redis",
     f"{REACH}TLS certificate verify failed (self-signed certificate); "
     "trust the server's CA with ?ssl_ca_certs=FILE in the URL"),
    ("tls", connection_error(ssl.SSLError(1, "x")), "--redis",
     f"{REACH}TLS handshake failed (x)"),
    ("refused", connection_error(ConnectionRefusedError(111, "Connection refused")), "--redis",
     f"{REACH}connection refused"),
    ("dns", connection_error(socket.gaierror(-2, "Name or service not known")), "--redis",
     f"{REACH}cannot resolve its host name (Name or service not known)"),
    ("timeout", RedisTimeoutError("Timeout connecting to server"), "--redis",
     f"{REACH}no answer within 2 s (timeout)"),
    ("not-redis", InvalidResponse(PROTOCOL), "--redis",
     f"{REACH}it does not speak the Redis protocol ({PROTOCOL})"),
    ("other", RedisConnectionError("Connection reset\nby peer"), "--redis",
     f"{REACH}ConnectionError: Connection reset by peer"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("exc", "key", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_each_refusal_says_why_in_one_line(exc: BaseException, key: str, message: str) -> None:
    error = refused(exc, TARGET, command="SET")
    assert (error.key, error.reason) == (key, message)
    assert "hunter2" not in str(error)
    assert "\n" not in str(error)


def test_a_wrong_password_from_a_file_names_the_file_setting() -> None:
    wrong = AuthenticationError("invalid password", status_code="WRONGPASS")
    error = refused(wrong, Target(URL, "pp", password_setting="--redis-password-file"))
    assert error.key == "--redis-password-file"


def test_a_tls_timeout_asks_whether_the_port_speaks_tls() -> None:
    error = refused(RedisTimeoutError("Timeout"), Target("rediss://r:6379/0", "pp", timeout=1.5))
    assert error.reason == (
        "cannot reach rediss://r:6379/0: "
        "no answer within 1.5 s (timeout; does that port speak TLS?)"
    )


def test_a_pipeline_error_names_its_command_never_its_arguments() -> None:
    exc = NoPermissionError(
        "Command # 1 (HSET pp:node:n1 id n1 listen 127.0.0.1:1) of pipeline caused error: "
        "('this user has no permissions to access one of the keys used as arguments',)",
        status_code="NOPERM",
    )
    error = refused(exc, Target("redis://r:1/0", "pp"))
    assert error.reason == (
        'user "default" may not write keys under prefix "pp" '
        "(HSET: NOPERM this user has no permissions to access one of the keys used as arguments)"
    )


def test_a_target_shows_its_url_redacted() -> None:
    assert "hunter2" not in repr(TARGET)


def test_a_reason_is_one_bounded_line() -> None:
    text = reason(RedisConnectionError("a\nb " + "x" * 500))
    assert "\n" not in text
    assert len(text) <= len("ConnectionError: ") + 200
