"""A node's succession: the process it took over from (``--take-over``, the new side) and the
successor it offers itself to (``--handoff-socket``, the old side). The node builds one with
the parts both sides are given (``parts.HandoffParts``), and calls it instead of starting,
after starting, and when it stops.

Rules:
- ``start_offer``: listens on ``--handoff-socket`` when it is set; a path it cannot listen on is a
  ``ConfigError`` naming the setting (the start fails).
- ``take_over``: runs the new side (``new.TakeOver``) on the handshake ``new.reach`` made; a
  ``HandoffError`` when it did not happen (the old process serves on). Once it did, the fleet's
  records of the adopted sockets are refreshed, and once the old process is done relaying
  this node offers itself in turn (a path it cannot listen on then is logged, not fatal).
- ``handed``: everything went to a successor; the node then stops without draining or
  leaving the fleet (``handed_over`` is called when the relay ends).
- ``close_offer`` and ``end_relay`` stop each side at shutdown.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable

from paradoxplex.node.delivery.replies import ReplyRouter
from paradoxplex.node.fleet.upkeep import FleetStatus
from paradoxplex.node.handoff.new import Handshake, TakeOver
from paradoxplex.node.handoff.old import HandoffOffer
from paradoxplex.node.handoff.parts import HandoffParts
from paradoxplex.node.handoff.terms import Terms
from paradoxplex.node.sockets.session import Session
from paradoxplex.node.tasks import TaskSet
from paradoxplex.shared.errors import ConfigError
from paradoxplex.shared.upstreams import UpstreamSpec

log = logging.getLogger("paradoxplex.node")


class Succession:
    """This node's hot handoffs, both sides (see the module's rules)."""

    def __init__(
        self,
        parts: HandoffParts,
        *,
        path: str | None,
        terms: Terms,
        version: str,
        status: FleetStatus,
        handed_over: Callable[[], None],
        new_session: Callable[[], Session],
        router: ReplyRouter,
        tasks: TaskSet,
        upstreams: Iterable[UpstreamSpec],
        drain_grace: float,
        max_frame: int,
    ) -> None:
        """``path``: ``--handoff-socket`` (None offers nothing); ``upstreams``: those of
        ``--upstream``, linked before a takeover beside the old process's."""
        self.parts = parts
        self.path = path
        self.new_session = new_session
        self.router = router
        self.tasks = tasks
        self.upstreams = tuple(upstreams)
        self.max_frame = max_frame
        self.offer = (
            HandoffOffer(
                path,
                parts,
                terms=terms,
                version=version,
                status=status,
                handed_over=handed_over,
                drain_grace=drain_grace,
            )
            if path
            else None
        )
        self.takeover: TakeOver | None = None

    @property
    def handed(self) -> bool:
        """Everything went to a successor: the node lives on in that process."""
        return self.offer is not None and self.offer.handed

    async def start_offer(self) -> None:
        """Offer this node on ``--handoff-socket`` (when set)."""
        if self.offer is not None and self.path:
            try:
                await self.offer.start()
            except OSError as error:
                reason = os.strerror(error.errno).lower() if error.errno else str(error)
                raise ConfigError("--handoff-socket", reason) from None

    async def take_over(self, handshake: Handshake) -> None:
        """Become the node the process behind ``handshake`` is (see the module's rules)."""
        self.takeover = takeover = TakeOver(
            handshake,
            self.parts,
            new_session=self.new_session,
            router=self.router,
            upstreams=self.upstreams,
            max_frame=self.max_frame,
        )
        await takeover.run()
        self.tasks.spawn(takeover.adopted(), "refresh taken-over sockets")
        self.tasks.spawn(self._offer_after(takeover), "handoff relay")

    async def _offer_after(self, takeover: TakeOver) -> None:
        """Offer this node in turn once the old process is done relaying."""
        await takeover.wait_relay()
        try:
            await self.start_offer()
        except ConfigError as error:
            log.warning("cannot offer a handoff: %s", error)

    async def close_offer(self) -> None:
        if self.offer is not None:
            await self.offer.close()

    async def end_relay(self) -> None:
        if self.takeover is not None:
            await self.takeover.close()

    def __repr__(self) -> str:
        return f"<Succession offer={self.offer!r} takeover={self.takeover!r}>"
