"""The one table from a Redis URL kind to a client (no I/O: clients connect lazily)."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.asyncio.sentinel import SentinelManagedConnection, SentinelManagedSSLConnection

from paradoxplex.node.fleet.redis import CLIENT_KINDS, FleetClient, connect, single_server
from paradoxplex.node.fleet.redis.cluster import SlotConnection
from paradoxplex.shared.config import PARSERS
from paradoxplex.shared.errors import ConfigError
from paradoxplex.shared.placement import CLUSTER_BUCKETS

URLS = {
    "redis": ("redis://127.0.0.1:1/3", Connection),
    "rediss": ("rediss://127.0.0.1:1/3", SSLConnection),
    "unix": ("unix:///tmp/paradoxplex-none.sock?db=3", UnixDomainSocketConnection),
    "redis+sentinel": ("redis+sentinel://127.0.0.1:1,127.0.0.1:2/svc/3", SentinelManagedConnection),
    "rediss+sentinel": ("rediss+sentinel://127.0.0.1:1/svc/3", SentinelManagedSSLConnection),
}
#: Kinds whose client is no single ``Redis`` (tested below on their own), by a test URL.
OTHER_URLS = {"redis+cluster": "redis+cluster://u:p%40ss@127.0.0.1:1,127.0.0.1:2"}


def test_every_kind_has_a_test_url() -> None:
    assert set(URLS) | set(OTHER_URLS) == set(CLIENT_KINDS)


@pytest.mark.parametrize("kind", sorted(CLIENT_KINDS))
def test_the_config_accepts_every_kind(kind: str) -> None:
    url = URLS[kind][0] if kind in URLS else OTHER_URLS[kind]
    assert PARSERS["redis"]("redis", url) == url


@pytest.mark.parametrize("kind", sorted(URLS))
async def test_a_kind_builds_a_client_and_its_subscribers(kind: str) -> None:
    url, connection_class = URLS[kind]
    client = connect(url, socket_timeout=1.5)
    try:
        assert isinstance(client, FleetClient)
        options = client.redis.connection_pool.connection_kwargs
        assert (options["socket_timeout"], options["socket_connect_timeout"]) == (1.5, 1.5)
        assert options["db"] == 3
        subscriber = client.subscriber()
        assert type(subscriber) is connection_class
        assert not subscriber.is_connected
        assert subscriber.health_check_interval == 0
        assert subscriber.retry.get_retries() == 0
        assert subscriber.db == 3
        assert client.subscriber() is not subscriber
    finally:
        await client.close()


async def test_a_cluster_url_builds_a_cluster_client_with_buckets_and_slot_readers() -> None:
    client = connect(OTHER_URLS["redis+cluster"], socket_timeout=1.5)
    try:
        cluster: object = client.redis
        assert isinstance(cluster, RedisCluster)
        assert client.buckets == CLUSTER_BUCKETS
        assert [(n.host, n.port) for n in cluster.startup_nodes] == [
            ("127.0.0.1", 1),
            ("127.0.0.1", 2),
        ]
        options = cluster.get_connection_kwargs()
        assert (options["username"], options["password"]) == ("u", "p@ss")
        assert (options["socket_timeout"], options["socket_connect_timeout"]) == (1.5, 1.5)
        reader = client.holding("px:inbox:{3}:n1").subscriber()
        assert isinstance(reader, SlotConnection)
        assert not reader.is_connected
        assert (reader.health_check_interval, reader.retry.get_retries()) == (0, 0)
        assert reader.password == "p@ss"
    finally:
        await client.close()


@pytest.mark.parametrize("url", ["redis+cluster://", "redis+cluster://h", "redis+cluster://h:0,"])
def test_a_cluster_url_without_host_port_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match="expected host:port"):
        connect(url)


@pytest.mark.parametrize("url", ["http://r:6379", "sentinel://r:26379", "r:6379", ""])
def test_an_unknown_kind_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        connect(url)
    assert caught.value.key == "--redis"
    assert "redis://, rediss://, unix://" in caught.value.reason


async def test_an_injected_client_lends_its_settings_to_subscribers() -> None:
    redis = Redis(host="127.0.0.1", port=1, db=5, password="secret", socket_timeout=0.5)
    client = single_server(redis)
    try:
        subscriber = client.subscriber()
        assert (subscriber.db, subscriber.password) == (5, "secret")
        assert subscriber.socket_timeout == 0.5
        assert client.redis is redis
        assert repr(client).startswith("<FleetClient ")
    finally:
        await client.close()
