"""The Sentinel client kind at start-up, against real processes on loopback: a master with a
password, watched by one sentinel with a password of its own (quorum 1).

Each failure is one ``ConfigError`` line, the URL redacted, saying what to fix: no sentinel
answers, a wrong service name, a port that is no sentinel, the sentinels' login, the
master's login. And a connection to a demoted master (``READONLY``) is closed and raised as
a lost connection, so the reader reconnects through the sentinels.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from paradoxplex.node.cli.devfleet.redis_servers import sentinel_config
from paradoxplex.node.fleet.backends import build_backend
from paradoxplex.node.fleet.redis import connect
from paradoxplex.shared.config import NodeConfig
from paradoxplex.shared.errors import ConfigError
from paradoxplex.shared.fleet import Backend
from tests.support.ports import free_port
from tests.support.redis_server import RedisServer

MASTER_PASSWORD = "m4ster-s3cret"
SENTINEL_PASSWORD = "sent1nel-s3cret"
SERVICE = "svc"


class Watched:
    """A master with a password and one sentinel (with its own) watching it."""

    def __init__(self) -> None:
        self.master = RedisServer(args=["--requirepass", MASTER_PASSWORD]).start()
        config = sentinel_config(self.master.port, service=SERVICE, quorum=1)
        self.sentinel = RedisServer(
            config=f"{config}sentinel auth-pass {SERVICE} {MASTER_PASSWORD}\n",
            args=["--sentinel", "--requirepass", SENTINEL_PASSWORD],
        ).start()

    def url(
        self, *, password: str = MASTER_PASSWORD, sentinel_password: str = SENTINEL_PASSWORD
    ) -> str:
        login = f":{password}@" if password else ""
        query = f"?sentinel_password={sentinel_password}" if sentinel_password else ""
        return f"redis+sentinel://{login}127.0.0.1:{self.sentinel.port}/{SERVICE}/0{query}"

    def close(self) -> None:
        self.sentinel.close()
        self.master.close()


@pytest.fixture(scope="module")
def watched() -> Iterator[Watched]:
    group = Watched()
    try:
        yield group
    finally:
        group.close()


async def refusal(url: str) -> str:
    """The one line a node with ``--redis url`` would print (it must not start)."""
    with pytest.raises(ConfigError) as caught:
        await build_backend(NodeConfig(redis=url, key_prefix="pp-sentinel"))
    assert "\n" not in str(caught.value)
    return str(caught.value)


@pytest_asyncio.fixture
async def backend(watched: Watched, key_prefix: str) -> AsyncIterator[Backend]:
    built = await build_backend(NodeConfig(redis=watched.url(), key_prefix=key_prefix))
    try:
        yield built
    finally:
        await built.bus.close()
        await built.state.close()


async def test_a_node_starts_through_the_sentinel(backend: Backend) -> None:
    assert await backend.state.ping()


async def test_no_sentinel_answers() -> None:
    one, two = free_port(), free_port()
    started = time.monotonic()
    said = await refusal(f"redis+sentinel://:pw@127.0.0.1:{one},127.0.0.1:{two}/{SERVICE}")
    assert time.monotonic() - started < 2.0  # passed over at once: no backoff per sentinel
    assert said == (
        f"--redis: cannot reach redis+sentinel://:***@127.0.0.1:{one},127.0.0.1:{two}/{SERVICE}: "
        f"no sentinel answers (127.0.0.1:{one}: connection refused; "
        f"127.0.0.1:{two}: connection refused)"
    )


async def test_an_unknown_service_name_is_named(watched: Watched) -> None:
    url = watched.url().replace(f"/{SERVICE}/", "/nope/")
    said = await refusal(url)
    assert said.endswith(
        f"no sentinel knows the service 'nope' (asked 127.0.0.1:{watched.sentinel.port}): "
        "check the name after the hosts"
    )
    assert MASTER_PASSWORD not in said
    assert SENTINEL_PASSWORD not in said
    assert "sentinel_password=***" in said


async def test_a_port_that_is_no_sentinel_is_named(redis_url: str) -> None:
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    said = await refusal(f"redis+sentinel://127.0.0.1:{port}/{SERVICE}")
    assert said.endswith(
        f"127.0.0.1:{port} is no sentinel (it does not know SENTINEL): give the sentinels' ports"
    ), said


@pytest.mark.parametrize("given", ["wrong", ""])
async def test_the_sentinels_login_is_named(watched: Watched, given: str) -> None:
    said = await refusal(watched.url(sentinel_password=given))
    assert f"sentinel 127.0.0.1:{watched.sentinel.port} refused the login" in said
    assert "sentinel_password=" in said
    assert "wrong" not in said.split("(")[0]


async def test_a_wrong_master_password_is_named(watched: Watched) -> None:
    said = await refusal(watched.url(password="wrong"))
    assert "wrong password or user" in said
    assert ":***@" in said
    assert "wrong@" not in said


async def test_a_missing_master_password_is_named(watched: Watched) -> None:
    said = await refusal(watched.url(password=""))
    assert "the server needs a password (NOAUTH)" in said


async def test_a_demoted_master_closes_the_reader_connection(watched: Watched) -> None:
    """READONLY on the reader's dedicated connection is a lost connection, so the reader asks
    the sentinels again rather than read on from a replica."""
    client = connect(watched.url())
    conn = client.subscriber()
    other = RedisServer().start()
    master = Redis(port=watched.master.port, password=MASTER_PASSWORD)
    try:
        await conn.connect()  # type: ignore[no-untyped-call]
        assert (conn.host, conn.port) == ("127.0.0.1", watched.master.port)  # type: ignore[attr-defined]
        master.replicaof("127.0.0.1", other.port)
        await conn.send_command("XADD", "pp-sentinel:demoted", "*", "f", "v")
        with pytest.raises(RedisConnectionError, match="previous master is now a slave"):
            await conn.read_response()
        assert not conn.is_connected
    finally:
        master.replicaof("NO", "ONE")
        master.close()
        other.close()
        await conn.disconnect()
        await client.close()
