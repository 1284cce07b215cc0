"""Node incarnations: every start of a node process is a new incarnation of its node id.

Rules:
- An incarnation id is drawn fresh at each start (``new_incarnation``: 12 hex digits, 48
  random bits). The node's record and every session record it writes carry it.
- The fleet state keeps one live incarnation per node id, the id's *claim*: written when the
  node registers, refreshed by each heartbeat, gone when it expires (``node_ttl``) or the node
  leaves. A session record counts (listed, counted, found, routed to) only while its
  incarnation is its node's live one, or while its node has none (dead, not cleaned up yet:
  the reaper's business): ``visible``.
- Claiming an id that another incarnation holds (``decide_claim``): the holder's admin API is
  asked who it is (``/livez`` names its incarnation). It answers as that incarnation: the
  holder lives, the claim is refused (two live processes with one id). It does not answer in
  time, or something else answers (the address is reused, by this very process when it
  restarted with the same ports): the holder is gone, and the claim replaces it.
- A takeover removes the replaced incarnation's session records before the node reports ready;
  a node whose heartbeat finds its id held by another incarnation was replaced and stops.
- A hot handoff moves the id between two live incarnations without a gap: the new process
  claims it in place of the old one and, until it has written every socket's record again as
  its own, names the old one as its *predecessor* in the claim (``claim_value``): records of
  both count (``live_set``). The claim's holder is its first incarnation (``claimant``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from paradoxplex.shared.errors import ConfigError

#: Random bytes in an incarnation id (two hex digits each).
INCARNATION_BYTES = 6


def new_incarnation() -> str:
    """A fresh incarnation id: 12 lowercase hex digits."""
    return os.urandom(INCARNATION_BYTES).hex()


#: The claim a release before incarnations stored (a hot handoff from one replaces it).
BEFORE_INCARNATIONS = "1"
#: Between an incarnation and its predecessor in a claim's value.
PREDECESSOR_MARK = "+"


def claim_value(incarnation: str, predecessor: str = "") -> str:
    """What the fleet stores as a node id's claim: the incarnation, and the predecessor whose
    records still count while a hot handoff moves them."""
    return f"{incarnation}{PREDECESSOR_MARK}{predecessor}" if predecessor else incarnation


def claimant(claim: str) -> str:
    """The incarnation that holds a claim."""
    return claim.partition(PREDECESSOR_MARK)[0]


def live_set(claim: str | None) -> frozenset[str]:
    """The incarnations whose records count under ``claim`` (none when there is no claim)."""
    if claim is None:
        return frozenset()
    return frozenset(claim.split(PREDECESSOR_MARK))


def visible(incarnation: str, live: str | None) -> bool:
    """Whether a record written by ``incarnation`` counts, its node's claim being ``live``
    (None: the node has no live incarnation)."""
    return live is None or incarnation in live_set(live)


@dataclass(frozen=True, slots=True)
class Holder:
    """The incarnation that holds a node id, and where it said it serves (empty when its
    record is gone or is another incarnation's)."""

    node_id: str
    incarnation: str
    listen: str = ""
    admin_url: str = ""


@dataclass(frozen=True, slots=True)
class Replace:
    """Take the id over from ``holder`` (it did not answer as itself)."""

    holder: Holder


@dataclass(frozen=True, slots=True)
class Refuse:
    """The id is held by a live process: do not start."""

    holder: Holder


def decide_claim(holder: Holder, answered: str | None) -> Replace | Refuse:
    """What to do about ``holder``, given the incarnation its address answered with (None: no
    answer in time, or not one of ours)."""
    if answered is not None and answered == holder.incarnation:
        return Refuse(holder)
    return Replace(holder)


def in_use(holder: Holder) -> ConfigError:
    """The one-line start-up error for a node id that a live process holds."""
    listen = holder.listen or "unknown"
    admin = holder.admin_url or "unknown"
    return ConfigError(
        "--node-id",
        f"node id {holder.node_id!r} is in use by a live node (listener {listen}, admin "
        f"{admin}, incarnation {holder.incarnation}); stop it or choose another id",
    )
