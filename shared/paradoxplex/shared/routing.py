"""Routing an upstream's reply: to a local socket, to the node that holds it, or nowhere.

Rules:
- A reply with ``client_uuid`` goes to that socket: written here when this node holds it,
  forwarded to its owner node when the fleet knows one, otherwise undeliverable (counted and
  logged, never an exception).
- A broadcast is delivered to the matching local sockets and published once for the other
  nodes (in fleet mode); each node delivers only to the sockets it holds, so each matching
  socket gets it exactly once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from paradoxplex.shared.sessions import BroadcastTarget, SessionInfo, matches


@dataclass(frozen=True, slots=True)
class WriteLocal:
    session: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class Forward:
    session: str
    node_id: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class PublishBroadcast:
    target: BroadcastTarget
    label: tuple[str, str] | None
    payload: bytes


@dataclass(frozen=True, slots=True)
class Undeliverable:
    session: str
    reason: str


Action = WriteLocal | Forward | PublishBroadcast | Undeliverable


def route_reply(
    session: str, payload: bytes, *, is_local: Callable[[str], bool], owner: str | None
) -> Action:
    """Where a reply for ``session`` goes; ``owner`` is the fleet's answer when not local."""
    if is_local(session):
        return WriteLocal(session, payload)
    if owner is None:
        return Undeliverable(session, "unknown socket")
    return Forward(session, owner, payload)


def route_broadcast(
    sessions: Iterable[SessionInfo],
    target: BroadcastTarget,
    label: tuple[str, str] | None,
    payload: bytes,
    *,
    fleet: bool,
) -> list[Action]:
    """Writes to each matching local session, plus one publish for the fleet."""
    actions: list[Action] = [
        WriteLocal(info.uuid, payload) for info in sessions if matches(info, target, label)
    ]
    if fleet:
        actions.append(PublishBroadcast(target, label, payload))
    return actions
