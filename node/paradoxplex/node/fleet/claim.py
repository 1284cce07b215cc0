"""Claiming this node's id in the fleet: free, taken over from a dead incarnation, or refused.

Rules (``shared.incarnations`` has the why):
- ``take_over`` is the one step that moves an id between incarnations: claim ``record``'s id
  as ``record.incarnation``, replacing incarnation ``replacing`` (None: only a free id, or
  one already this incarnation's), then remove every session record of the id that is not
  this incarnation's. It answers ``Claimed(removed)`` or ``Held(incarnation)`` (nothing
  changed). A start uses it through ``claim_node_id``; a hand-over between two live
  processes can call it directly with the incarnation it replaces.
- ``claim_node_id`` (start-up): take the id if free; if another incarnation holds it, ask that
  holder's admin API (``ask_holder``: ``GET /livez``, at most ``PROBE_TIMEOUT`` s, TLS not
  verified: only who answers matters) and refuse to start (``ConfigError`` naming its
  addresses) when it answers as itself, take over otherwise. At most ``CLAIM_ROUNDS`` rounds
  when the id keeps changing hands meanwhile.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp

from paradoxplex.shared.errors import ConfigError
from paradoxplex.shared.fleet import FleetState, NodeRecord
from paradoxplex.shared.incarnations import Holder, Refuse, decide_claim, in_use

log = logging.getLogger("paradoxplex.node.fleet")

#: Seconds the holder of a node id has to answer as itself before it is taken for dead.
PROBE_TIMEOUT = 1.0
#: Times a start tries to claim an id that keeps changing hands before it gives up.
CLAIM_ROUNDS = 3

Ask = Callable[[str], Awaitable[str | None]]


@dataclass(frozen=True, slots=True)
class Claimed:
    """The id is this incarnation's; ``removed``: the other incarnations' sessions, gone."""

    removed: list[str]


@dataclass(frozen=True, slots=True)
class Held:
    """Another incarnation holds the id; nothing was changed."""

    incarnation: str


async def take_over(
    fleet: FleetState, record: NodeRecord, *, replacing: str | None, ttl: float
) -> Claimed | Held:
    """Claim ``record.node_id`` as ``record.incarnation`` in place of ``replacing``, then
    remove the records of every other incarnation of that id."""
    holder = await fleet.register_node(record, ttl=ttl, replacing=replacing)
    if holder is not None:
        return Held(holder)
    return Claimed(await fleet.remove_stale_sessions(record.node_id))


async def ask_holder(admin_url: str) -> str | None:
    """The incarnation the admin API at ``admin_url`` says it is; None when nothing answers
    within ``PROBE_TIMEOUT`` or the answer names none."""
    if not admin_url:
        return None
    timeout = aiohttp.ClientTimeout(total=PROBE_TIMEOUT)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            http.get(admin_url.rstrip("/") + "/livez", ssl=False) as answer,
        ):
            body = await answer.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None
    found = body.get("incarnation") if isinstance(body, dict) else None
    return found if isinstance(found, str) and found else None


async def holder_of(fleet: FleetState, node_id: str, incarnation: str) -> Holder:
    """Who holds ``node_id`` as ``incarnation``, with its addresses when its record is its."""
    record = await fleet.node_record(node_id)
    if record is None or record.incarnation != incarnation:
        return Holder(node_id, incarnation)
    return Holder(node_id, incarnation, record.listen, record.admin_url)


async def claim_node_id(
    fleet: FleetState, record: NodeRecord, *, ttl: float, ask: Ask = ask_holder
) -> list[str]:
    """Claim the id at start; the sessions of earlier incarnations it removed. Raises
    ``ConfigError`` when a live process holds the id."""
    replacing: str | None = None
    for _ in range(CLAIM_ROUNDS):
        result = await take_over(fleet, record, replacing=replacing, ttl=ttl)
        if isinstance(result, Claimed):
            _report(record, replacing, result.removed)
            return result.removed
        holder = await holder_of(fleet, record.node_id, result.incarnation)
        decision = decide_claim(holder, await ask(holder.admin_url))
        if isinstance(decision, Refuse):
            raise in_use(holder)
        replacing = holder.incarnation
    raise ConfigError("--node-id", f"node id {record.node_id!r} keeps changing hands; try again")


def _report(record: NodeRecord, replaced: str | None, removed: list[str]) -> None:
    if replaced is not None:
        log.warning(
            "node id %s: took over from incarnation %s, which did not answer; removed the %d "
            "sockets it had registered",
            record.node_id,
            replaced,
            len(removed),
        )
    elif removed:
        log.info(
            "node id %s: removed %d sockets an earlier incarnation had registered",
            record.node_id,
            len(removed),
        )
