"""Picking an upstream for a message.

Rules:
- ``round-robin`` (default, as the original): per message, the next upstream in rotation that
  has room in its send queue; upstreams without room are skipped. None has room: ``Wait``
  (the socket stops reading until one has). None is in rotation: ``NoUpstream``.
- ``sticky``: a socket keeps the upstream it was given while that upstream stays in rotation,
  even when its queue is full (``Wait``), so its bytes keep their order. It moves, by round
  robin, only when its upstream leaves rotation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Place:
    upstream_id: str


@dataclass(frozen=True, slots=True)
class Wait:
    """Every candidate is full: stop reading until one has room."""


@dataclass(frozen=True, slots=True)
class NoUpstream:
    """Nothing is in rotation."""


Decision = Place | Wait | NoUpstream
WAIT = Wait()
NO_UPSTREAM = NoUpstream()


class RoundRobin:
    """Round robin over the upstreams in rotation, skipping full ones."""

    def __init__(self) -> None:
        self._members: list[str] = []
        self._next = 0

    def set_members(self, members: Iterable[str]) -> None:
        self._members = sorted(set(members))
        if self._next >= len(self._members):
            self._next = 0

    @property
    def members(self) -> tuple[str, ...]:
        return tuple(self._members)

    def pick(self, has_room: Callable[[str], bool]) -> Decision:
        count = len(self._members)
        if not count:
            return NO_UPSTREAM
        for step in range(count):
            index = (self._next + step) % count
            member = self._members[index]
            if has_room(member):
                self._next = (index + 1) % count
                return Place(member)
        return WAIT

    def __repr__(self) -> str:
        return f"<RoundRobin members={len(self._members)} next={self._next}>"


class Sticky:
    """A socket stays on its upstream until that upstream leaves rotation."""

    def __init__(self, round_robin: RoundRobin | None = None) -> None:
        self.round_robin = round_robin or RoundRobin()
        self._assigned: dict[str, str] = {}

    def set_members(self, members: Iterable[str]) -> None:
        self.round_robin.set_members(members)

    def pick(self, client_uuid: str, has_room: Callable[[str], bool]) -> Decision:
        current = self._assigned.get(client_uuid)
        if current is not None and current in self.round_robin.members:
            return Place(current) if has_room(current) else WAIT
        decision = self.round_robin.pick(has_room)
        if isinstance(decision, Place):
            self._assigned[client_uuid] = decision.upstream_id
        return decision

    def forget(self, client_uuid: str) -> None:
        self._assigned.pop(client_uuid, None)

    def assigned(self, client_uuid: str) -> str | None:
        return self._assigned.get(client_uuid)

    def __repr__(self) -> str:
        return f"<Sticky sessions={len(self._assigned)} {self.round_robin!r}>"


class Balancer:
    """The routing policy a node runs: round robin or sticky, chosen by name."""

    def __init__(self, policy: str = "round-robin") -> None:
        if policy not in ROUTING:
            raise ValueError(f"unknown routing {policy!r}")
        self.policy = policy
        self._sticky = Sticky()

    def set_members(self, members: Iterable[str]) -> None:
        self._sticky.set_members(members)

    def pick(self, client_uuid: str, has_room: Callable[[str], bool]) -> Decision:
        if self.policy == "sticky":
            return self._sticky.pick(client_uuid, has_room)
        return self._sticky.round_robin.pick(has_room)

    def forget(self, client_uuid: str) -> None:
        self._sticky.forget(client_uuid)

    def __repr__(self) -> str:
        return f"<Balancer {self.policy} {self._sticky!r}>"


ROUTING = ("round-robin", "sticky")
