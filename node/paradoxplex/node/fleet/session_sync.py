"""Keeps the fleet state's copy of this node's sessions in step with the sockets it holds.

Rules:
- Opens are written at once, coalesced: every open queued while one write is on its way goes
  in the next write, one round trip per ``CHUNK`` sessions. After a write of opens the next one
  waits ``coalesce`` seconds: in a reconnect storm the opens then go in a few large writes
  instead of one small write per round trip (each write costs the node far more CPU than a
  row); a lone open after a quiet spell is still written at once. ``on_registered`` hears which
  sessions the fleet knows from then on (the node holds their data back until then).
- Changes and closes are written every ``interval`` seconds (a closed socket leaves the
  fleet's list within about that long), or with the next opens.
- A write that fails (fleet unavailable) is kept and retried; ``resync`` queues every local
  session again (Redis came back, possibly empty).
- Counter changes are written at most every ``counter_interval`` seconds per session.
- Nothing is written while ``ready()`` is false (the node is not registered in the fleet,
  e.g. Redis came back empty): a session written before its node's liveness key would make
  the node look dead to the others, who would remove it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

from paradoxplex.node.tasks import checkpoint
from paradoxplex.shared.errors import FleetUnavailable
from paradoxplex.shared.fleet import FleetState
from paradoxplex.shared.sessions import SessionInfo

log = logging.getLogger("paradoxplex.node.fleet")

CHUNK = 500
#: Seconds between two writes of opens (see the rules).
COALESCE = 0.01
T = TypeVar("T")


class SessionSync:
    def __init__(
        self,
        fleet: FleetState,
        local: Callable[[], list[SessionInfo]],
        *,
        interval: float = 0.1,
        coalesce: float = COALESCE,
        on_error: Callable[[], None] | None = None,
        ready: Callable[[], bool] | None = None,
        on_registered: Callable[[Iterable[SessionInfo]], None] | None = None,
        on_not_ready: Callable[[], None] | None = None,
    ) -> None:
        self.fleet = fleet
        self.ready = ready
        self.local = local
        self.interval = interval
        self.coalesce = coalesce
        self.on_error = on_error
        self.on_registered = on_registered
        self.on_not_ready = on_not_ready
        self._added: dict[str, SessionInfo] = {}
        self._changed: dict[str, SessionInfo] = {}
        self._removed: dict[str, str] = {}
        self._wakeup = asyncio.Event()
        self._urgent = asyncio.Event()
        self._flushing = asyncio.Lock()  # one flush at a time: a flush's end means written
        self.healthy = True

    def added(self, info: SessionInfo) -> None:
        self._removed.pop(info.client_uuid, None)
        self._added[info.client_uuid] = info
        self._wakeup.set()
        self._urgent.set()

    def changed(self, info: SessionInfo) -> None:
        if info.client_uuid not in self._added:
            self._changed[info.client_uuid] = info
        self._wakeup.set()

    def removed(self, info: SessionInfo) -> None:
        self._added.pop(info.client_uuid, None)
        self._changed.pop(info.client_uuid, None)
        self._removed[info.client_uuid] = info.node_id
        self._wakeup.set()

    def resync(self) -> None:
        for info in self.local():
            self._added[info.client_uuid] = info
        self._wakeup.set()

    @property
    def unwritten(self) -> dict[str, SessionInfo]:
        """Opened sockets not written yet (an update would be a no-op for them)."""
        return self._added

    @property
    def pending(self) -> int:
        return len(self._added) + len(self._changed) + len(self._removed)

    async def run(self) -> None:
        while True:
            await self._wakeup.wait()
            if self.ready is not None and not self.ready():
                if self.on_not_ready is not None:
                    self.on_not_ready()
                await asyncio.sleep(self.interval)
                continue
            self._wakeup.clear()
            self._urgent.clear()
            opens = bool(self._added)
            try:
                await self.flush()
                self.healthy = True
            except FleetUnavailable as error:
                if self.healthy:
                    log.warning("fleet writes failing, will retry: %s", error.reason)
                self.healthy = False
                if self.on_error is not None:
                    self.on_error()
                self._wakeup.set()
            checkpoint()
            if opens and self.healthy:
                await asyncio.sleep(self.coalesce)
            with contextlib.suppress(TimeoutError):  # opens cut the wait short
                async with asyncio.timeout(self.interval):
                    await self._urgent.wait()

    async def flush(self) -> None:
        """Write what is queued, ``CHUNK`` sessions per round trip; what fails stays queued.
        One flush at a time: when it returns, what was queued before it is written."""
        async with self._flushing:
            await self._flush()

    async def _flush(self) -> None:
        fleet = self.fleet
        while self._removed:
            chunk = _take(self._removed)
            try:
                await fleet.unregister_sessions(list(chunk.items()))
            except FleetUnavailable:
                _put_back(self._removed, chunk)
                raise
        await self._write(self._added, fleet.register_sessions, self.on_registered)
        await self._write(self._changed, fleet.update_sessions)

    async def _write(
        self,
        queue: dict[str, SessionInfo],
        write: Callable[[list[SessionInfo]], Awaitable[None]],
        written: Callable[[Iterable[SessionInfo]], None] | None = None,
    ) -> None:
        while queue:
            chunk = _take(queue)
            try:
                await write(list(chunk.values()))
            except FleetUnavailable:
                _put_back(queue, chunk)
                raise
            if written is not None:
                written(chunk.values())
                if 0 < len(queue) < CHUNK:  # opens that came during the write: let more come
                    await asyncio.sleep(self.coalesce)

    def __repr__(self) -> str:
        return f"<SessionSync pending={self.pending} healthy={self.healthy}>"


def _take(queue: dict[str, T]) -> dict[str, T]:
    keys = list(queue)[:CHUNK]
    return {key: queue.pop(key) for key in keys}


def _put_back(queue: dict[str, T], chunk: dict[str, T]) -> None:
    """Return a chunk that failed, ahead of what was queued since (newer entries win)."""
    merged = {**chunk, **queue}
    queue.clear()
    queue.update(merged)
