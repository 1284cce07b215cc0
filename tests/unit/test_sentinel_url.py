"""Sentinel URLs: read into their parts, accepted by ``--redis``, refused in one line without a
password; the refusals' wording when no sentinel names a master; concurrent master lookups
over scripted sentinels (no I/O)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import AuthenticationError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from paradoxplex.node.cli.devfleet.processes import restart_delay
from paradoxplex.node.cli.devfleet.redis_servers import sentinel_config
from paradoxplex.node.fleet.redis import CLIENT_KINDS
from paradoxplex.node.fleet.redis.errors import Target, refused
from paradoxplex.node.fleet.redis.sentinel import (
    FleetSentinel,
    NoMaster,
    connection_options,
    sentinel_options,
)
from paradoxplex.shared.config import PARSERS, REDIS_SCHEMES
from paradoxplex.shared.errors import ConfigError
from paradoxplex.shared.sentinel_url import SentinelUrl, is_sentinel_url, parse_sentinel_url
from tests.support.eventually import eventually

PARSED = [
    (
        "redis+sentinel://s1:26380,s2,s3:1/mymaster",
        SentinelUrl((("s1", 26380), ("s2", 26379), ("s3", 1)), "mymaster"),
    ),
    (
        "redis+sentinel://:pw@10.0.0.1:26379/svc/3",
        SentinelUrl((("10.0.0.1", 26379),), "svc", db=3, password="pw"),
    ),
    (
        "REDISS+SENTINEL://u:p%40ss@[::1]:26379,[fe80::1]/svc/?sentinel_password=s%26p&ssl_ca_certs=/ca",
        SentinelUrl(
            (("::1", 26379), ("fe80::1", 26379)),
            "svc",
            tls=True,
            username="u",
            password="p@ss",
            sentinel_password="s&p",
            options=(("ssl_ca_certs", "/ca"),),
        ),
    ),
    (
        "redis+sentinel://s1/svc?sentinel_username=watch&sentinel_password=x&socket_timeout=1",
        SentinelUrl(
            (("s1", 26379),),
            "svc",
            sentinel_username="watch",
            sentinel_password="x",
            options=(("socket_timeout", "1"),),
        ),
    ),
]  # fmt: skip


@pytest.mark.parametrize(("url", "parts"), PARSED)
def test_a_sentinel_url_is_read_into_its_parts(url: str, parts: SentinelUrl) -> None:
    assert parse_sentinel_url(url) == parts
    assert is_sentinel_url(url)


BAD = [
    ("redis+sentinel://:secret@s1:26379", "the service name after the hosts is missing"),
    ("redis+sentinel://:secret@s1:26379/", "the service name after the hosts is missing"),
    ("redis+sentinel://:secret@s1,,s2/svc", "a sentinel host is empty"),
    ("redis+sentinel://:secret@s1:0/svc", "sentinel 's1:0' needs a port in 1-65535"),
    ("redis+sentinel://:secret@s1:port/svc", "sentinel 's1:port' needs a port in 1-65535"),
    ("redis+sentinel://:secret@:26379/svc", "sentinel ':26379' has no host"),
    ("redis+sentinel://:secret@s1/svc/zero", "the database 'zero' is no number"),
]


@pytest.mark.parametrize(("url", "problem"), BAD)
def test_a_malformed_sentinel_url_is_one_line_without_its_password(url: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        PARSERS["redis"]("redis", url)
    said = str(caught.value)
    assert said.startswith(f"redis: {problem} in ")
    assert "secret" not in said
    assert ":***@" in said
    assert said.endswith(
        "(expected redis+sentinel://[:password@]host:port[,host:port...]/service_name[/db])"
    )


def test_every_scheme_the_config_accepts_has_a_client_kind() -> None:
    assert set(REDIS_SCHEMES) <= set(CLIENT_KINDS)
    for url in ("redis+sentinel://s1/svc", "rediss+sentinel://s1,s2/svc/1"):
        assert PARSERS["redis"]("redis", url) == url


def test_the_master_and_the_sentinels_get_their_own_logins_and_share_tls() -> None:
    url = parse_sentinel_url(
        "rediss+sentinel://u:mp@s1/svc/2?sentinel_password=sp&ssl_ca_certs=/ca&socket_timeout=3"
    )
    master = connection_options(url)
    assert (master["username"], master["password"], master["db"]) == ("u", "mp", 2)
    assert (master["ssl"], master["ssl_ca_certs"], master["socket_timeout"]) == (True, "/ca", 3.0)
    sentinel = sentinel_options(url, master)
    assert (sentinel["username"], sentinel["password"]) == (None, "sp")
    assert (sentinel["ssl"], sentinel["ssl_ca_certs"], sentinel["socket_timeout"]) == (
        True,
        "/ca",
        3.0,
    )
    assert "db" not in sentinel
    assert sentinel["retry"].get_retries() == 1  # at once, once: the next sentinel is the fallback


URL = "redis+sentinel://:hunter2@s1:26379,s2:26379/svc/0?sentinel_password=hunter3"
SHOWN = "redis+sentinel://:***@s1:26379,s2:26379/svc/0?sentinel_password=***"


def refusal(exc: BaseException) -> str:
    said = str(refused(exc, Target(URL, "pp")))
    assert "hunter" not in said
    assert "\n" not in said
    return said


def refused_connection() -> RedisConnectionError:
    try:
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except OSError as error:
            raise RedisConnectionError("Error 111 connecting to s1:26379.") from error
    except RedisConnectionError as caught:
        return caught


TIMED_OUT = RedisTimeoutError("Timeout connecting to server")
NO_MASTER = [
    (
        NoMaster("svc", failed=(("s1:26379", refused_connection()), ("s2:26379", TIMED_OUT))),
        f"--redis: cannot reach {SHOWN}: no sentinel answers "
        "(s1:26379: connection refused; s2:26379: no answer (timeout))",
    ),
    (
        NoMaster("svc", unknown_at=("s1:26379", "s2:26379")),
        f"--redis: cannot reach {SHOWN}: no sentinel knows the service 'svc' "
        "(asked s1:26379, s2:26379): check the name after the hosts",
    ),
    (
        NoMaster("svc", failed=(("s1:26379", refused_connection()),), down_at=("s2:26379",)),
        f"--redis: cannot reach {SHOWN}: the sentinels see the master of 'svc' down (s2:26379); "
        "a failover may be under way",
    ),
    (
        NoMaster("svc", failed=(("s1:26379", AuthenticationError("invalid password")),)),
        f"--redis: cannot reach {SHOWN}: sentinel s1:26379 refused the login: give or correct "
        "the URL's sentinel_password= (invalid password)",
    ),
    (
        NoMaster("svc", failed=(("s1:6379", ResponseError("unknown command 'SENTINEL'")),)),
        f"--redis: cannot reach {SHOWN}: s1:6379 is no sentinel (it does not know SENTINEL): "
        "give the sentinels' ports",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("exc", "said"), NO_MASTER)
def test_why_no_sentinel_named_a_master_is_one_line(exc: NoMaster, said: str) -> None:
    assert refusal(exc) == said


def test_no_master_is_an_outage_at_run_time() -> None:
    """A ``ConnectionError``: retried and reconnected like any lost Redis."""
    exc = NoMaster("svc", unknown_at=("s1:26379",), down_at=("s2:26379",))
    assert isinstance(exc, RedisConnectionError)
    assert str(exc) == "no master for 'svc' (s1:26379: unknown service; s2:26379: master down)"


def test_the_local_sentinels_watch_the_master_and_a_dead_redis_waits() -> None:
    config = sentinel_config(6400, service="svc", down_after_ms=1000, failover_timeout_ms=3000)
    assert config.splitlines() == [
        "sentinel monitor svc 127.0.0.1 6400 2",
        "sentinel down-after-milliseconds svc 1000",
        "sentinel failover-timeout svc 3000",
        "sentinel parallel-syncs svc 1",
    ]
    assert restart_delay(1) == 1.0
    assert restart_delay(1, at_least=10.0) == 10.0
    assert restart_delay(6, at_least=10.0) == 30.0


class ScriptedSentinel(Redis):
    """A sentinel that answers ``SENTINEL MASTERS`` from a script, without a socket: with
    ``masters`` once ``gate`` is open, or with ``error``."""

    def __init__(
        self,
        port: int,
        *,
        masters: dict[str, dict[str, Any]] | None = None,
        error: Exception | None = None,
        gate: asyncio.Event | None = None,
    ) -> None:
        super().__init__(host="sentinel", port=port)
        self.masters = masters or {}
        self.error = error
        self.gate = gate
        self.asked = 0
        self.port = port

    def __repr__(self) -> str:
        return f"<ScriptedSentinel :{self.port} asked={self.asked}>"

    async def sentinel_masters(self) -> dict[str, dict[str, Any]]:
        self.asked += 1
        if self.error is not None:
            raise self.error
        if self.gate is not None:
            await self.gate.wait()
        return self.masters


HEALTHY: dict[str, Any] = {
    "ip": "10.0.0.9",
    "port": 6379,
    "is_master": True,
    "is_sdown": False,
    "is_odown": False,
    "num-other-sentinels": 2,
}


async def test_concurrent_lookups_keep_every_sentinel() -> None:
    """Two lookups answered by the same sentinel each move it to the front: the list keeps
    all three (redis-py's swap by a stale index would hold one twice and lose one)."""
    both_asked = asyncio.Event()
    down = ScriptedSentinel(1, error=RedisConnectionError("refused"))
    answers = ScriptedSentinel(2, masters={"svc": HEALTHY}, gate=both_asked)
    last = ScriptedSentinel(3)
    sentinel = FleetSentinel([])
    sentinel.sentinels = [down, answers, last]

    async def lookup() -> tuple[str, int]:
        return await sentinel.discover_master("svc")

    first, second = asyncio.ensure_future(lookup()), asyncio.ensure_future(lookup())
    await eventually(lambda: answers.asked == 2, message="both lookups wait on the same one")
    both_asked.set()
    assert await first == await second == ("10.0.0.9", 6379)
    assert sentinel.sentinels == [answers, down, last]
    assert await sentinel.discover_master("svc") == ("10.0.0.9", 6379)
    assert down.asked == 2  # the third lookup asked the one that answered first
