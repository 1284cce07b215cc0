"""Routing an upstream's reply: to a local socket, to the node that holds it, or nowhere.

Rules:
- A reply with ``client_uuid`` goes to that socket: written here when this node holds it,
  forwarded to its owner node when the owner is known (the owner cache), looked up in the
  fleet state once when it is not, and looked up again after each wait of the
  ``retry.UNKNOWN_SOCKET`` policy, as many times as it allows (a socket that connected on
  another node a moment ago may not be in the fleet state yet).
  After that it is undeliverable (counted and logged, never an exception). A lone node
  (``fleet=False``) neither looks up nor retries.
- A broadcast is published once for the other nodes (in fleet mode), first, so that they
  fan out while this node writes, and delivered to the matching local sockets; each node
  delivers only to the sockets it holds, so each matching socket gets it exactly once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from paradoxplex.shared.retry import UNKNOWN_SOCKET
from paradoxplex.shared.sessions import BroadcastTarget, SessionInfo, matches


@dataclass(frozen=True, slots=True)
class WriteLocal:
    client_uuid: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class Forward:
    client_uuid: str
    node_id: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class PublishBroadcast:
    target: BroadcastTarget
    label: tuple[str, str] | None
    payload: bytes


@dataclass(frozen=True, slots=True)
class LookUp:
    """Ask the fleet state who holds the socket, then route again with ``looked_up=True``."""

    client_uuid: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class RetryLater:
    """Route again (``attempt``) after ``delay`` seconds: the owner may register by then."""

    client_uuid: str
    payload: bytes
    delay: float
    attempt: int


@dataclass(frozen=True, slots=True)
class Undeliverable:
    client_uuid: str
    reason: str


Action = WriteLocal | Forward | PublishBroadcast | LookUp | RetryLater | Undeliverable


def route_reply(
    client_uuid: str,
    payload: bytes,
    *,
    is_local: Callable[[str], bool],
    owner: str | None,
    fleet: bool = False,
    looked_up: bool = False,
    attempt: int = 0,
    may_retry: bool = True,
) -> Action:
    """Where a reply for ``client_uuid`` goes; ``owner`` is the cached or looked-up owner node.

    ``fleet``: other nodes may hold the socket; ``looked_up``: the fleet state was asked
    already for this attempt; ``attempt``: how many look-ups came after the first;
    ``may_retry``: the node has room for one more waiting reply.
    """
    if is_local(client_uuid):
        return WriteLocal(client_uuid, payload)
    if owner is not None:
        return Forward(client_uuid, owner, payload)
    if not fleet:
        return Undeliverable(client_uuid, "unknown socket")
    if not looked_up:
        return LookUp(client_uuid, payload)
    failed = attempt + 1  # look-ups that found no owner
    if may_retry and not UNKNOWN_SOCKET.gives_up(failed):
        return RetryLater(client_uuid, payload, UNKNOWN_SOCKET.delay(failed), attempt + 1)
    return Undeliverable(client_uuid, "unknown socket")


def route_broadcast(
    sessions: Iterable[SessionInfo],
    target: BroadcastTarget,
    label: tuple[str, str] | None,
    payload: bytes,
    *,
    fleet: bool,
) -> list[Action]:
    """One publish for the fleet (first), then a write to each matching local session."""
    actions: list[Action] = [PublishBroadcast(target, label, payload)] if fleet else []
    actions += (
        WriteLocal(info.client_uuid, payload) for info in sessions if matches(info, target, label)
    )
    return actions
