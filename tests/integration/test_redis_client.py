"""Start-up against a real Redis that refuses: the probe, its wording, its clean-up, and the
password file (``backends`` with ``redis.probe`` and ``redis.errors.refused``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoPermissionError

from paradoxplex.node.fleet.backends import build_backend, starting
from paradoxplex.node.fleet.redis import connect
from paradoxplex.shared.config import NodeConfig
from paradoxplex.shared.errors import ConfigError, FleetUnavailable
from tests.conftest import delete_prefix
from tests.support.redis_server import RedisServer
from tests.support.secured_redis import ADMIN_PASSWORD, USER_PASSWORD, url
from tests.support.tls import TlsPort, self_signed


async def scratch_left(redis_url: str, prefix: str) -> list[bytes]:
    client = Redis.from_url(redis_url, password=ADMIN_PASSWORD)
    try:
        return [key async for key in client.scan_iter(match=f"{prefix}:probe:*", count=500)]
    finally:
        await client.aclose()


@pytest.mark.parametrize(
    ("user", "message"),
    [
        ("noxadd", 'user "noxadd" may not run XADD (XADD: NOPERM'),
    ],
)
async def test_an_acl_that_denies_a_command_or_channel_is_named(
    secured_redis: RedisServer, key_prefix: str, user: str, message: str
) -> None:
    config = NodeConfig(redis=url(secured_redis, user, USER_PASSWORD), key_prefix=key_prefix)
    with pytest.raises(ConfigError) as caught:
        await build_backend(config)
    assert caught.value.key == "--redis"
    assert caught.value.reason.startswith(message.format(prefix=key_prefix))
    assert USER_PASSWORD not in str(caught.value)
    assert await scratch_left(secured_redis.url, key_prefix) == []  # cleaned up after itself


@pytest.mark.parametrize("user", ["nochannels", "nosubscribe"])
async def test_a_user_without_pub_sub_may_run_a_node(
    secured_redis: RedisServer, key_prefix: str, user: str
) -> None:
    """The bus travels on streams: channels and SUBSCRIBE need no permission."""
    config = NodeConfig(redis=url(secured_redis, user, USER_PASSWORD), key_prefix=key_prefix)
    backend = await build_backend(config)
    try:
        assert await backend.state.ping()
    finally:
        await backend.state.close()


async def test_a_probe_that_passes_leaves_nothing_behind(redis_url: str, key_prefix: str) -> None:
    backend = await build_backend(NodeConfig(redis=redis_url, key_prefix=key_prefix))
    try:
        assert await scratch_left(redis_url, key_prefix) == []
    finally:
        await backend.state.close()
        await delete_prefix(redis_url, key_prefix)


async def test_the_password_file_replaces_the_urls_password(
    secured_redis: RedisServer, key_prefix: str, tmp_path: Path
) -> None:
    secret = tmp_path / "pw"
    secret.write_text(f"{ADMIN_PASSWORD}\n")
    config = NodeConfig(
        redis=url(secured_redis, "", "not-this-one"),
        redis_password_file=str(secret),
        key_prefix=key_prefix,
    )
    backend = await build_backend(config)
    try:
        assert await backend.state.ping()
    finally:
        await backend.state.close()


async def test_a_clients_repr_shows_no_password(secured_redis: RedisServer) -> None:
    client = connect(url(secured_redis, "u", "hunter2-pw"))
    try:
        assert "hunter2-pw" not in repr(client)
    finally:
        await client.close()


async def test_a_redis_error_later_in_start_up_is_worded_the_same() -> None:
    """``starting`` wraps Node.start: what the edge raised becomes the same one line."""
    config = NodeConfig(redis="redis://u:hunter2-pw@127.0.0.1:1/0", key_prefix="pp")
    denied = NoPermissionError(
        "this user has no permissions to access one of the keys used as arguments",
        status_code="NOPERM",
    )
    with pytest.raises(ConfigError) as caught:
        async with starting(config):
            raise FleetUnavailable("NoPermissionError: …") from denied
    assert caught.value.reason.startswith('user "u" may not write keys under prefix "pp" (NOPERM')
    with pytest.raises(ConfigError, match=r"^--redis: cannot reach redis://u:\*\*\*@127.0.0.1:1/0"):
        async with starting(config):
            raise RedisConnectionError("Connection reset by peer")
    with pytest.raises(OSError, match="in use"):  # the listener's error is not Redis's
        async with starting(config):
            raise OSError(98, "Address already in use")
    with pytest.raises(FleetUnavailable):  # without Redis there is nothing to word
        async with starting(NodeConfig()):
            raise FleetUnavailable("memory")


async def test_the_ca_named_in_the_url_is_trusted(tmp_path: Path) -> None:
    """What the TLS message advises (``?ssl_ca_certs=FILE``) gets past the handshake."""
    cert, key = self_signed(tmp_path)
    with TlsPort(cert, key) as tls:
        untrusted = NodeConfig(redis=f"rediss://127.0.0.1:{tls.port}/0")
        with pytest.raises(ConfigError, match="TLS certificate verify failed"):
            await build_backend(untrusted)
        assert tls.handshakes == 0
        trusted = NodeConfig(redis=f"rediss://127.0.0.1:{tls.port}/0?ssl_ca_certs={cert}")
        with pytest.raises(ConfigError) as caught:
            await build_backend(trusted)  # the handshake passes; then the port hangs up
        assert "TLS" not in caught.value.reason
        assert tls.handshakes >= 1
