"""Draining a node's sockets: stop accepting, let them finish, place what they read, close them.

Rules:
- Once: the node drains from the first call on (``NodeState.draining``); a later call
  returns at once.
- The listener stops accepting and the fleet hears that the node drains; the sockets get
  ``grace`` seconds (``drain_grace`` unless told) to finish on their own.
- Then every socket stops being read and, for at most ``FLUSH_READS`` seconds, the frames
  already read are placed, the links send their queues and the upstreams acknowledge what
  they hold (what waits to be delivered again included); what could not be is logged.
- Then each socket is closed (``close_sessions``): what it still has to write gets ``flush``
  seconds, then it is aborted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from paradoxplex.node.links.pool import UpstreamPool
from paradoxplex.node.state import NodeState

log = logging.getLogger("paradoxplex.node")

#: Seconds for the frames already read to reach an upstream once the sockets stop.
FLUSH_READS = 5.0


class SocketDrain:
    """Drains the sockets a node holds (see the module's rules)."""

    def __init__(
        self,
        state: NodeState,
        *,
        pool: UpstreamPool,
        stop_accepting: Callable[[], None],
        announce: Callable[[], Awaitable[None]],
        grace: float,
    ) -> None:
        self.state = state
        self.sessions = state.sessions
        self.pool = pool
        self.stop_accepting = stop_accepting
        self.announce = announce
        self.grace = grace

    async def run(self, grace: float | None = None) -> None:
        """Stop accepting; let sockets finish for ``grace`` seconds; then close them."""
        if self.state.draining:
            return
        self.state.draining = True
        grace = self.grace if grace is None else grace
        log.info(
            "node %s draining: %d sockets, grace %.1fs",
            self.state.node_id,
            len(self.sessions),
            grace,
        )
        self.stop_accepting()
        await self.announce()
        deadline = time.monotonic() + grace
        while self.sessions and time.monotonic() < deadline:  # noqa: ASYNC110 - bounded
            await asyncio.sleep(0.05)
        await self.flush_reads(deadline=time.monotonic() + FLUSH_READS)
        await self.close_sessions("node shutting down")

    async def flush_reads(self, *, deadline: float) -> None:
        """Place every frame already read, let the links send their queues and the
        upstreams acknowledge what they hold (what waits to be delivered again included)."""
        for session in list(self.sessions.values()):
            session.set_paused(True)
        while time.monotonic() < deadline:
            held = any(s.flow.held for s in self.sessions.values())
            queued = any(link.queue for link in self.pool.links.values() if link.in_rotation)
            if not held and not queued and not self.pool.totals.messages:
                return
            await asyncio.sleep(0.02)
        log.warning("shutdown: some read data could not be sent to an upstream in time")

    async def close_sessions(self, reason: str, *, flush: float = 2.0) -> None:
        for session in list(self.sessions.values()):
            session.close(reason)
        deadline = time.monotonic() + flush
        while self.sessions and time.monotonic() < deadline:  # noqa: ASYNC110 - bounded
            await asyncio.sleep(0.02)
        for session in list(self.sessions.values()):
            session.abort(reason)
        await asyncio.sleep(0)

    def __repr__(self) -> str:
        return f"<SocketDrain sockets={len(self.sessions)} draining={self.state.draining}>"
