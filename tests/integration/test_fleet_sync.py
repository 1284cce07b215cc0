"""SessionSync coalesces a burst of opens into a few writes; a lone open is written at once.

The fleet is the in-memory one, with each write taking a loop turn like a round trip would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence

from paradoxplex.node.fleet.memory import MemoryFleet
from paradoxplex.node.fleet.session_sync import CHUNK, SessionSync
from paradoxplex.shared.sessions import SessionInfo, new_client_uuid
from tests.support.eventually import eventually


class CountingFleet(MemoryFleet):
    """Counts session writes; each one yields to the loop (a round trip's worth)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[int] = []

    async def register_sessions(self, infos: Sequence[SessionInfo]) -> None:
        self.writes.append(len(infos))
        await asyncio.sleep(0.001)
        await super().register_sessions(infos)


def _info() -> SessionInfo:
    return SessionInfo(new_client_uuid(), "n1", "127.0.0.1:1", 0.0)


async def test_a_burst_of_opens_goes_in_few_writes_and_each_is_registered() -> None:
    fleet = CountingFleet()
    registered: set[str] = set()

    def on_registered(infos: Iterable[SessionInfo]) -> None:
        registered.update(info.client_uuid for info in infos)

    sync = SessionSync(fleet, list, coalesce=0.02, on_registered=on_registered)
    runner = asyncio.create_task(sync.run())
    try:
        lone = _info()
        sync.added(lone)
        await eventually(lambda: lone.client_uuid in registered, message="the lone open")
        assert fleet.writes == [1]  # written alone, without waiting for company

        opened = [_info() for _ in range(2000)]
        for info in opened:  # one open per loop turn, as a busy listener accepts them
            sync.added(info)
            await asyncio.sleep(0)
        await eventually(lambda: registered >= {info.client_uuid for info in opened})
        burst = fleet.writes[1:]
        assert sum(burst) == len(opened)
        assert max(burst) <= CHUNK
        assert len(burst) <= len(opened) // 20, burst  # not one small write per round trip
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
