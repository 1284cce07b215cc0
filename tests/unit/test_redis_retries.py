"""redis-py's ``Retry`` built from our retry policy, and where each client kind uses one."""

from __future__ import annotations

import pytest
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from paradoxplex.node.fleet.redis import connect
from paradoxplex.node.fleet.redis.retries import PolicyBackoff, redis_retry
from paradoxplex.shared.retry import (
    BROKEN_CONNECTION,
    CLUSTER_COMMAND,
    NO_RETRY,
    UPSTREAM_LINK,
    RetryPolicy,
)


def test_the_backoff_is_the_policys_delay() -> None:
    backoff = PolicyBackoff(CLUSTER_COMMAND)
    assert [backoff.compute(n) for n in range(1, 6)] == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5])
    assert backoff.compute(0) == backoff.compute(1)  # redis-py may ask before any failure
    assert backoff == PolicyBackoff(CLUSTER_COMMAND) != PolicyBackoff(NO_RETRY)


def test_a_retry_retries_as_often_as_the_policy_allows() -> None:
    assert redis_retry(CLUSTER_COMMAND).get_retries() == 3
    assert redis_retry(BROKEN_CONNECTION).get_retries() == 1
    assert redis_retry(NO_RETRY).get_retries() == 0


def test_a_policy_without_a_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="limit of attempts"):
        redis_retry(UPSTREAM_LINK)


async def test_redis_py_runs_the_attempts_and_retries_only_the_errors_named() -> None:
    retry = redis_retry(RetryPolicy(attempts=3), on=(RedisConnectionError,))
    calls: list[int] = []

    async def broken() -> None:
        calls.append(1)
        raise RedisConnectionError("reset")

    async def timed_out() -> None:
        calls.append(2)
        raise RedisTimeoutError("slow")

    async def failed(error: Exception) -> None:
        pass

    with pytest.raises(RedisConnectionError):
        await retry.call_with_retry(broken, failed)
    with pytest.raises(RedisTimeoutError):
        await retry.call_with_retry(timed_out, failed)
    assert calls == [1, 1, 1, 2]


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:1/0", "redis+sentinel://127.0.0.1:1/svc/0"], ids=["one", "sentinel"]
)
async def test_a_command_whose_connection_broke_is_sent_once_more_at_once(url: str) -> None:
    client = connect(url)
    try:
        retry = client.redis.connection_pool.connection_kwargs["retry"]
        assert retry == redis_retry(BROKEN_CONNECTION, on=(RedisConnectionError,))
        assert client.subscriber().retry == redis_retry(NO_RETRY)
    finally:
        await client.close()


async def test_a_cluster_command_is_retried_by_the_cluster_policy() -> None:
    client = connect("redis+cluster://127.0.0.1:1")
    try:
        cluster: object = client.redis
        assert isinstance(cluster, RedisCluster)
        assert cluster.retry == redis_retry(CLUSTER_COMMAND)
        assert client.holding("px:inbox:{3}:n1").subscriber().retry == redis_retry(NO_RETRY)
    finally:
        await client.close()
