"""redis-py's ``Retry``, with its delays and attempts from a ``shared.retry.RetryPolicy``.

Rules:
- Our own retries (the bus reconnecting, the outbox adding again) use the policy directly.
  redis-py's ``Retry`` stays only where the retry has to happen inside redis-py, between
  steps that only the client can take, and ``redis_retry`` builds each of them from a policy:
  - a pooled command whose connection broke (``BROKEN_CONNECTION``): redis-py drops that
    connection and takes another from its pool before trying again, in the middle of a
    command, a pipeline or a script we handed it whole;
  - a Redis Cluster command (``CLUSTER_COMMAND``): between attempts redis-py reloads the
    slot map, sends again only what no node answered, and spaces its topology refreshes by
    the same backoff;
  - connections whose owner watches and replaces them itself (``NO_RETRY``: redis-py's
    default would retry three times behind our back).
- A policy without a limit of attempts is refused here: redis-py would retry for ever.
"""

from __future__ import annotations

from redis.asyncio.retry import Retry
from redis.backoff import AbstractBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from paradoxplex.shared.retry import RetryPolicy

__all__ = ["PolicyBackoff", "redis_retry"]


class PolicyBackoff(AbstractBackoff):
    """redis-py's backoff interface, answered by a ``RetryPolicy`` (which keeps no state)."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy

    def compute(self, failures: int) -> float:
        return self.policy.delay(max(1, failures))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PolicyBackoff) and other.policy == self.policy

    def __hash__(self) -> int:
        return hash(self.policy)

    def __repr__(self) -> str:
        return f"<PolicyBackoff {self.policy}>"


def redis_retry(
    policy: RetryPolicy,
    *,
    on: tuple[type[Exception], ...] = (RedisConnectionError, RedisTimeoutError),
) -> Retry:
    """redis-py's ``Retry`` of the errors ``on``, as often and as spaced as ``policy`` says."""
    if policy.retries is None:
        raise ValueError("a redis-py retry needs a limit of attempts")
    return Retry(PolicyBackoff(policy), policy.retries, supported_errors=on)
