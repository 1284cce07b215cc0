"""The node's bound on reply bytes buffered for all its sockets together, decided without I/O.

Rules:
- Each socket's share is what its transport buffers, as the edge last ``update``-d it: after
  each write, and for every socket in ``refresh`` (a socket that drained meanwhile is counted
  until then: the total errs high, never low). A socket with nothing buffered has no entry.
- ``fits(size)``: a reply of ``size`` bytes keeps the total within ``limit`` (0: no limit).
- When it does not, the edge refreshes every share and asks ``shed(writer, size)``: the
  sockets to close, most bytes buffered first, until the reply fits; the writer itself is
  among them when it is the biggest offender, and then its reply is dropped instead. A reply
  to a socket with nothing buffered goes once every other share is shed, however large (so
  the total stays under ``limit`` plus one reply).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)

DEFAULT_LIMIT = 256 * 1024 * 1024


class ReplyBuffers(Generic[K]):
    """Buffered reply bytes per socket and in total; ``limit`` default 256 MiB."""

    __slots__ = ("_shares", "limit", "total")

    def __init__(self, *, limit: int = DEFAULT_LIMIT) -> None:
        self.limit = limit
        self.total = 0
        self._shares: dict[K, int] = {}

    def update(self, key: K, size: int) -> None:
        """``key``'s transport now buffers ``size`` bytes."""
        shares = self._shares
        if size:
            self.total += size - shares.get(key, 0)
            shares[key] = size
        else:
            self.total -= shares.pop(key, 0)

    def forget(self, key: K) -> None:
        self.total -= self._shares.pop(key, 0)

    def share(self, key: K) -> int:
        return self._shares.get(key, 0)

    def backlogged(self) -> Iterable[K]:
        """The sockets with bytes buffered (a copy: ``update`` them while iterating)."""
        return list(self._shares)

    def fits(self, size: int) -> bool:
        return not self.limit or self.total + size <= self.limit

    def shed(self, writer: K, size: int) -> list[K]:
        """The sockets to close so that a reply of ``size`` bytes to ``writer`` fits, biggest
        first; they are forgotten here. ``writer`` in the list: drop its reply too."""
        victims: list[K] = []
        need = size
        for key in sorted(self._shares, key=self._shares.__getitem__, reverse=True):
            if self.total + need <= self.limit:
                break
            victims.append(key)
            self.forget(key)
            if key == writer:
                need = 0
        return victims

    def __repr__(self) -> str:
        return f"<ReplyBuffers total={self.total} limit={self.limit} sockets={len(self._shares)}>"
