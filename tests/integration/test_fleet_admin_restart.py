"""Admin commands mean what they answer, across an empty Redis restart.

Node ``b``'s admin API sends numbered payloads to live sockets that node ``a`` holds while
Redis is killed and restarted empty (a redis-server of the test's own). For every answer:
200 means it arrived exactly once; a 503 or 504 says its outcome, and ``not_applied`` means
it never arrives, not even later (``unknown`` may: retried with its key it would replay, see
``test_admin_fault_matrix``); 404 never happens for a live socket.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
import pytest_asyncio

from paradoxplex.shared.config import Address
from tests.support.client import Client, close_all
from tests.support.eventually import eventually
from tests.support.fleet import accepted, start_fleet, start_upstream, stop_nodes
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.slow

SOCKETS = 5
SENDS = 300
PER_SECOND = 100
NUMBERED = re.compile(rb"<(\d+)>")


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with RedisServer() as redis_server:
        yield redis_server


@pytest_asyncio.fixture
async def upstream() -> AsyncIterator[Address]:
    upstream_server, address = await start_upstream()
    try:
        yield address
    finally:
        await upstream_server.stop(0)


def arrived(clients: list[Client]) -> Counter[int]:
    return Counter(int(n) for c in clients for n in NUMBERED.findall(bytes(c.received)))


async def test_admin_sends_across_an_empty_restart_mean_what_they_answer(
    server: RedisServer, upstream: Address, key_prefix: str
) -> None:
    nodes = await start_fleet(server.url, key_prefix, [upstream], ids=("a", "b"))
    clients = [await Client.connect(nodes[0].listen_address, collect=True) for _ in range(SOCKETS)]
    answers: dict[int, int] = {}
    outcomes: dict[int, str] = {}
    try:
        uuids = [await accepted(nodes[0], client) for client in clients]
        async with aiohttp.ClientSession() as http:
            base = nodes[1].admin_url + "/v1/sockets/"

            async def send(n: int) -> None:
                url = f"{base}{uuids[n % SOCKETS]}/send"
                async with http.post(url, json={"text": f"<{n}>"}) as answer:
                    answers[n] = answer.status
                    if answer.status in (503, 504):
                        outcomes[n] = (await answer.json())["error"]["outcome"]

            async def restart() -> None:
                await asyncio.to_thread(server.kill)
                await asyncio.to_thread(server.start)  # same port, empty

            sending: list[asyncio.Task[None]] = []
            trouble: asyncio.Task[None] | None = None
            for n in range(SENDS):
                if n == SENDS // 3:
                    trouble = asyncio.create_task(restart())
                sending.append(asyncio.create_task(send(n)))
                await asyncio.sleep(1 / PER_SECOND)  # the scenario: a steady stream of sends
            await asyncio.gather(*sending)
            assert trouble is not None
            await trouble
        statuses = Counter(answers.values())
        ok = {n for n, status in answers.items() if status == 200}
        await eventually(
            lambda: set(arrived(clients)) >= ok, timeout=10, message="every 200 arrived"
        )
        # a command answered not_applied must not act, even late: wait for the nodes to
        # settle (a command's deadline is owner_timeout at most), then compare
        await asyncio.sleep(2 * nodes[1].config.owner_timeout)  # the window a late act needs
        got = arrived(clients)
        said = dict(Counter(outcomes.values()))
        print(f"\nadmin sends across an empty restart: {dict(statuses)}, outcomes {said}")
        assert 404 not in statuses, statuses
        assert set(statuses) <= {200, 503, 504}, statuses
        assert set(outcomes) == {n for n, status in answers.items() if status in (503, 504)}
        not_applied = {n for n, outcome in outcomes.items() if outcome == "not_applied"}
        assert ok <= set(got), "a send answered 200 did not arrive"
        assert not (not_applied & set(got)), "a send answered not_applied arrived"
        assert set(got) <= ok | set(outcomes), "a send arrived that was never asked"
        assert max(got.values()) == 1, "a send arrived twice"
        assert statuses[200] >= SENDS // 2, statuses  # the outage is short: most go through
    finally:
        await close_all(clients)
        await stop_nodes(nodes)
