"""How long to wait before trying again, and when to give up: one retry policy for every retry.

Rules:
- A ``RetryPolicy`` is a value: after ``failures`` failed attempts in a row, wait ``first``
  seconds doubled ``failures - 1`` times, at most ``cap``, plus a random jitter of up to
  ``jitter`` seconds; give up once ``attempts`` attempts in all have failed (``None``: never,
  the caller stops by its own rule, a deadline or an outage held too long).
- The delays and the limit are tenacity's strategies (``wait_exponential`` + ``wait_random``,
  ``stop_after_attempt``/``stop_never``), which depend on the attempt number alone: the
  policy asks them with nothing but that number (no clock), and the same strategies drive
  tenacity's ``AsyncRetrying`` where a caller retries one call (``wait``, ``stop``).
- No I/O, no clock, no sleeping here: the edge sleeps for what ``delay`` says (or lets
  ``AsyncRetrying`` do it); redis-py's ``Retry`` gets its delays from a policy too
  (``paradoxplex.node.fleet.redis.retries``).
- ``Backoff`` counts one caller's failures in a row and gives the next wait; a success
  starts the count over.
- Every retry of the product uses one of the policies named at the end of this module: a
  reader finds every delay in one table, and the unit tests pin each one.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from tenacity import RetryCallState
from tenacity.stop import stop_after_attempt, stop_base, stop_never
from tenacity.wait import wait_base, wait_exponential, wait_random


class _Attempt(RetryCallState):
    """What tenacity's attempt-number strategies read, and nothing else (``RetryCallState``'s
    own constructor reads the clock and wants a ``Retrying``)."""

    def __init__(self, number: int) -> None:  # no super().__init__: see the docstring
        self.attempt_number = number


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Capped exponential backoff with jitter, and how many attempts in all (see the rules).

    Defaults: no wait, no jitter, no limit; ``RetryPolicy(attempts=1)`` never retries.
    """

    first: float = 0.0
    cap: float = 0.0
    jitter: float = 0.0
    attempts: int | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.first <= self.cap:
            raise ValueError(f"need 0 <= first <= cap, got first={self.first} cap={self.cap}")
        if self.jitter < 0:
            raise ValueError(f"jitter must not be negative, got {self.jitter}")
        if self.attempts is not None and self.attempts < 1:
            raise ValueError(f"attempts must be at least 1 (or None), got {self.attempts}")

    @property
    def retries(self) -> int | None:
        """Attempts after the first (``None``: no limit)."""
        return None if self.attempts is None else self.attempts - 1

    @property
    def wait(self) -> wait_base:
        """The wait as a tenacity strategy (for ``AsyncRetrying(wait=...)``)."""
        exponential = self._exponential()
        return exponential + wait_random(0, self.jitter) if self.jitter else exponential

    @property
    def stop(self) -> stop_base:
        """When to give up, as a tenacity strategy (for ``AsyncRetrying(stop=...)``)."""
        return stop_never if self.attempts is None else stop_after_attempt(self.attempts)

    def delay(self, failures: int) -> float:
        """Seconds to wait after ``failures`` (1, 2, …) failed attempts in a row."""
        return float(self.wait(_attempt(failures)))

    def bounds(self, failures: int) -> tuple[float, float]:
        """The least and the most ``delay(failures)`` can be (the jitter is their difference)."""
        base = float(self._exponential()(_attempt(failures)))
        return base, base + self.jitter

    def gives_up(self, failures: int) -> bool:
        """Whether ``failures`` failed attempts in a row are all that the policy allows."""
        return bool(self.stop(_attempt(failures)))

    def _exponential(self) -> wait_exponential:
        return wait_exponential(multiplier=self.first, max=self.cap)

    def capped(self, cap: float) -> RetryPolicy:
        """The same policy with another longest wait (``first`` lowered to it if needed)."""
        return replace(self, first=min(self.first, cap), cap=cap)


def _attempt(failures: int) -> _Attempt:
    if failures < 1:
        raise ValueError(f"failures count from 1, got {failures}")
    return _Attempt(failures)


class Backoff:
    """One caller's failures in a row under ``policy``: ``failed()`` counts one and returns the
    wait before the next attempt; ``succeeded()`` starts over."""

    __slots__ = ("failures", "policy")

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.failures = 0

    def failed(self) -> float:
        self.failures += 1
        return self.policy.delay(self.failures)

    def succeeded(self) -> None:
        self.failures = 0

    @property
    def exhausted(self) -> bool:
        """Whether the failures so far are all that the policy allows."""
        return self.failures > 0 and self.policy.gives_up(self.failures)

    def __repr__(self) -> str:
        return f"<Backoff failures={self.failures}>"


# The product's retries, each in one place ------------------------------------------------

#: An upstream link: ready checks and reopening the streams after a break, one series
#: (0.2, 0.4, 0.8, 1.6, 3.2, then 5 s, each plus up to 0.2 s), started over once ready.
UPSTREAM_LINK = RetryPolicy(first=0.2, cap=5.0, jitter=0.2)

#: The bus's inbox reader reconnecting to Redis (0.05 s doubling up to the bus's
#: ``max_backoff``, 1 s by default, each plus up to 0.05 s), until it is closed.
BUS_RECONNECT = RetryPolicy(first=0.05, cap=1.0, jitter=0.05)

#: The bus's outbox adding an entry again, while Redis is held to be briefly away or the
#: inbox is not there yet (0.02 s doubling up to 0.25 s); its deadlines end the retries.
BUS_SEND = RetryPolicy(first=0.02, cap=0.25)

#: Looking up the owner of a socket the fleet does not know yet: the look-up and 5 more,
#: 0.05, 0.1, 0.2, 0.4 and 0.8 s apart (about 1.5 s in all).
UNKNOWN_SOCKET = RetryPolicy(first=0.05, cap=0.8, attempts=6)

#: A Redis Cluster command after a connection error (redis-py reloads the topology between
#: attempts): 3 more attempts, 0.1, 0.2 and 0.4 s apart (at most 0.5 s each).
CLUSTER_COMMAND = RetryPolicy(first=0.1, cap=0.5, attempts=4)

#: A Redis command whose pooled connection broke: once more, at once, on a new connection.
BROKEN_CONNECTION = RetryPolicy(attempts=2)

#: Never again: connections whose owner watches and replaces them itself.
NO_RETRY = RetryPolicy(attempts=1)

#: The admin client (CLI) retrying an action answered 503, 504 or 409 ``in_progress``, with
#: the same Idempotency-Key: 0.25, 0.5, 1, 2, 2 s apart (each plus up to 0.1 s), 6 attempts
#: in all (about 6 s of waiting); the dashboard's retries (``ui/app.js``) have these numbers.
ADMIN_ACTION = RetryPolicy(first=0.25, cap=2.0, jitter=0.1, attempts=6)

#: ``--workers``: a worker process that died is started again 0.4, 0.8, 1.6, 3.2 and 5 s
#: later; at its sixth death the parent gives up.
WORKER_RESTART = RetryPolicy(first=0.4, cap=5.0, attempts=6)

#: ``paradoxplex cluster``: a member that died is started again 1, 2, 4 … up to 30 s later,
#: as often as it dies.
MEMBER_RESTART = RetryPolicy(first=1.0, cap=30.0)
