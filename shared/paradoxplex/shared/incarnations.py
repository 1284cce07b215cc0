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


def visible(incarnation: str, live: str | None) -> bool:
    """Whether a record written by ``incarnation`` counts, its node's live one being ``live``
    (None: the node has no live incarnation)."""
    return live is None or live == incarnation


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
