"""The one retry policy: delays (bounds, jitter, cap), when it gives up, and the named ones."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from tenacity import AsyncRetrying, retry_if_exception_type

from paradoxplex.shared.retry import (
    ADMIN_ACTION,
    BROKEN_CONNECTION,
    BUS_RECONNECT,
    BUS_SEND,
    CLUSTER_COMMAND,
    MEMBER_RESTART,
    NO_RETRY,
    UNKNOWN_SOCKET,
    UPSTREAM_LINK,
    WORKER_RESTART,
    Backoff,
    RetryPolicy,
)

SAMPLES = 2000


def delays(policy: RetryPolicy, count: int) -> list[float]:
    return [policy.delay(failures) for failures in range(1, count + 1)]


def test_the_wait_doubles_from_first_up_to_the_cap() -> None:
    policy = RetryPolicy(first=0.1, cap=1.0)
    assert delays(policy, 7) == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0])


def test_the_cap_holds_far_out() -> None:
    policy = RetryPolicy(first=0.2, cap=5.0, jitter=0.2)
    assert policy.bounds(10_000) == (5.0, 5.2)
    assert 5.0 <= policy.delay(10_000) <= 5.2


@pytest.mark.parametrize("failures", [1, 2, 3, 6, 50])
def test_the_jitter_stays_in_its_range_and_spreads_over_it(failures: int) -> None:
    policy = RetryPolicy(first=0.2, cap=5.0, jitter=0.2)
    low, high = policy.bounds(failures)
    assert high - low == pytest.approx(0.2)
    seen = [policy.delay(failures) for _ in range(SAMPLES)]
    assert all(low <= delay <= high for delay in seen)
    # 2,000 uniform draws: each end of the range is reached within 5 % (a miss is ~1e-44)
    assert min(seen) < low + 0.01
    assert max(seen) > high - 0.01


def test_no_jitter_means_the_same_wait_every_time() -> None:
    assert {BUS_SEND.delay(3) for _ in range(100)} == {0.08}


@pytest.mark.parametrize(
    ("attempts", "failures", "gives_up"),
    [
        (None, 1, False),
        (None, 1_000_000, False),
        (1, 1, True),
        (2, 1, False),
        (2, 2, True),
        (6, 5, False),
        (6, 6, True),
        (6, 7, True),
    ],
)
def test_it_gives_up_after_the_attempts_in_all(
    attempts: int | None, failures: int, gives_up: bool
) -> None:
    assert RetryPolicy(attempts=attempts).gives_up(failures) is gives_up


def test_retries_are_the_attempts_after_the_first() -> None:
    assert (RetryPolicy(attempts=4).retries, NO_RETRY.retries, UPSTREAM_LINK.retries) == (
        3,
        0,
        None,
    )


@pytest.mark.parametrize(
    "settings",
    [
        {"first": -0.1, "cap": 1.0},
        {"first": 2.0, "cap": 1.0},
        {"jitter": -0.5},
        {"attempts": 0},
    ],
    ids=["negative first", "first over the cap", "negative jitter", "no attempt"],
)
def test_a_policy_that_makes_no_sense_is_refused(settings: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"first|jitter|attempts"):
        RetryPolicy(**settings)  # type: ignore[arg-type]


def test_failures_count_from_one() -> None:
    with pytest.raises(ValueError, match="count from 1"):
        UPSTREAM_LINK.delay(0)


def test_capped_keeps_the_rest() -> None:
    assert BUS_RECONNECT.capped(0.3) == RetryPolicy(first=0.05, cap=0.3, jitter=0.05)
    assert BUS_RECONNECT.capped(0.01) == RetryPolicy(first=0.01, cap=0.01, jitter=0.05)


def test_backoff_counts_failures_in_a_row_and_starts_over() -> None:
    backoff = Backoff(BUS_SEND)
    assert [backoff.failed() for _ in range(6)] == pytest.approx(
        [0.02, 0.04, 0.08, 0.16, 0.25, 0.25]
    )
    assert repr(backoff) == "<Backoff failures=6>"
    backoff.succeeded()
    assert backoff.failed() == pytest.approx(0.02)


def test_backoff_says_when_the_attempts_are_used_up() -> None:
    backoff = Backoff(CLUSTER_COMMAND)
    seen = []
    while not backoff.exhausted:
        seen.append(backoff.failed())
    assert seen == pytest.approx([0.1, 0.2, 0.4, 0.5])  # the fourth failure is the last
    assert backoff.failures == 4


# The product's policies: the same delays and attempts as the code they replaced -------------


def test_an_upstream_link_waits_from_a_fifth_of_a_second_up_to_five() -> None:
    assert [UPSTREAM_LINK.bounds(n)[0] for n in range(1, 9)] == pytest.approx(
        [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0]
    )
    assert UPSTREAM_LINK.jitter == 0.2
    assert UPSTREAM_LINK.attempts is None


def test_the_bus_reconnects_from_50_ms_up_to_its_max_backoff() -> None:
    assert [BUS_RECONNECT.bounds(n)[0] for n in range(1, 7)] == pytest.approx(
        [0.05, 0.1, 0.2, 0.4, 0.8, 1.0]
    )
    assert (BUS_RECONNECT.jitter, BUS_RECONNECT.attempts) == (0.05, None)


def test_the_outbox_adds_again_from_20_ms_up_to_a_quarter_second() -> None:
    assert delays(BUS_SEND, 6) == pytest.approx([0.02, 0.04, 0.08, 0.16, 0.25, 0.25])
    assert BUS_SEND.attempts is None


def test_an_unknown_socket_is_looked_up_six_times_over_a_second_and_a_half() -> None:
    waits = delays(UNKNOWN_SOCKET, 5)
    assert waits == [0.05, 0.1, 0.2, 0.4, 0.8]
    assert not UNKNOWN_SOCKET.gives_up(5)
    assert UNKNOWN_SOCKET.gives_up(6)


def test_a_cluster_command_is_retried_three_times_as_redis_pys_exponential_backoff_did() -> None:
    # redis.backoff.ExponentialBackoff(cap=0.5, base=0.05).compute(n) = min(0.5, 0.05 * 2**n)
    assert delays(CLUSTER_COMMAND, 6) == pytest.approx([min(0.5, 0.05 * 2**n) for n in range(1, 7)])
    assert CLUSTER_COMMAND.retries == 3


def test_an_admin_action_is_tried_six_times_over_about_six_seconds() -> None:
    assert [ADMIN_ACTION.bounds(n)[0] for n in range(1, 6)] == [0.25, 0.5, 1.0, 2.0, 2.0]
    assert ADMIN_ACTION.jitter == 0.1
    assert (ADMIN_ACTION.gives_up(5), ADMIN_ACTION.gives_up(6)) == (False, True)


def test_the_dashboard_retries_with_the_admin_clients_numbers() -> None:
    app = Path(__file__).resolve().parents[2] / "admin/paradoxplex/admin/ui/app.js"
    found = re.search(
        r"const RETRY = \{ first: (\d+), cap: (\d+), jitter: (\d+), attempts: (\d+) \}",
        app.read_text(),
    )
    assert found is not None, "app.js has no RETRY"
    first, cap, jitter, attempts = (int(number) for number in found.groups())
    policy = ADMIN_ACTION
    assert (first / 1000, cap / 1000, jitter / 1000) == (policy.first, policy.cap, policy.jitter)
    assert attempts == policy.attempts


def test_a_broken_connection_is_retried_once_at_once() -> None:
    assert (BROKEN_CONNECTION.retries, BROKEN_CONNECTION.delay(1)) == (1, 0.0)


# The same strategies drive tenacity's own retrying --------------------------------------------


async def test_async_retrying_built_from_a_policy_waits_and_stops_as_the_policy_says() -> None:
    policy = RetryPolicy(first=0.1, cap=0.3, attempts=4)
    slept: list[float] = []

    async def record(seconds: float) -> None:
        slept.append(seconds)

    retrying = AsyncRetrying(
        wait=policy.wait,
        stop=policy.stop,
        retry=retry_if_exception_type(ConnectionError),
        sleep=record,
        reraise=True,
    )
    calls = 0

    async def refused() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError

    with pytest.raises(ConnectionError):
        await retrying(refused)
    assert calls == 4
    assert slept == pytest.approx([0.1, 0.2, 0.3])


def test_a_worker_is_restarted_five_times_as_before() -> None:
    # was: restart n (1, 2, ...) after min(5, 0.2 * 2**n) s, and no restart after the fifth
    assert delays(WORKER_RESTART, 6) == pytest.approx([min(5.0, 0.2 * 2**n) for n in range(1, 7)])
    backoff = Backoff(WORKER_RESTART)
    restarts = 0
    while True:
        backoff.failed()  # a death
        if backoff.exhausted:
            break
        restarts += 1
    assert restarts == 5


def test_a_dev_fleet_member_is_restarted_after_1_2_4_up_to_30_seconds() -> None:
    assert delays(MEMBER_RESTART, 7) == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert MEMBER_RESTART.attempts is None
