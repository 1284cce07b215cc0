"""What a node sent to an upstream and the upstream has not acknowledged yet (batch protocol).

Rules:
- A numbered message (its delivery id is ``(client_uuid, seq)``) written to a link is kept
  (``sent``) until the upstream acknowledges it. ``ack(client_uuid, seq)`` is cumulative per
  socket in the order the link sent them: it finishes that socket's messages on this link up
  to and including the one numbered ``seq``; an ack for a number this link does not hold is
  ignored (it was finished already, or never sent here).
- Bounds, by count and bytes (payload bytes): per link (``UnackedLimits``) and for the whole
  node (``UnackedTotals``, shared by every link and by what waits to be delivered again).
  Past a bound the message is still sent but not kept: at-most-once for that one. ``sent``
  says which bound bit (``LINK_BOUND`` or ``NODE_BOUND``) so that the edge counts it
  (``paradoxplex_at_most_once_total{reason}``, whose other reasons are here too); a marker
  (its number only) keeps its place, so that an ack naming it still finishes the messages
  sent before it.
- ``take_all`` empties the link (it broke, or ended): the messages kept, per socket in the
  order sent, for the node to deliver again.
No I/O, no clock.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

DEFAULT_LINK_MESSAGES = 4096
DEFAULT_LINK_BYTES = 16 * 1024 * 1024
DEFAULT_NODE_MESSAGES = 65_536
DEFAULT_NODE_BYTES = 256 * 1024 * 1024


class Tracked(Protocol):
    """A message a link may keep: its delivery id and its payload."""

    @property
    def client_uuid(self) -> str: ...

    @property
    def seq(self) -> int: ...

    @property
    def payload(self) -> bytes: ...


T = TypeVar("T", bound=Tracked)


class AtMostOnce(enum.StrEnum):
    """Why a message sent to an upstream was not kept for redelivery (the metric label)."""

    LINK_BOUND = "link_bound"  # the link's unacknowledged bound was full
    NODE_BOUND = "node_bound"  # the node's was
    NO_ACKS = "no_acks"  # in flight on a stream that does not acknowledge, when it broke
    NODE_STOPPING = "node_stopping"  # unacknowledged when the node stopped


@dataclass(frozen=True, slots=True)
class UnackedLimits:
    """One link's bounds: 4,096 messages and 16 MiB by default."""

    messages: int = DEFAULT_LINK_MESSAGES
    bytes: int = DEFAULT_LINK_BYTES

    def __post_init__(self) -> None:
        if self.messages < 1 or self.bytes < 1:
            raise ValueError("unacked bounds must be at least 1")


class UnackedTotals:
    """The node's unacknowledged messages, over every link and the redelivery line; bounded
    by ``max_messages`` (65,536) and ``max_bytes`` (256 MiB) by default."""

    __slots__ = ("bytes", "max_bytes", "max_messages", "messages")

    def __init__(
        self, *, max_messages: int = DEFAULT_NODE_MESSAGES, max_bytes: int = DEFAULT_NODE_BYTES
    ) -> None:
        if max_messages < 1 or max_bytes < 1:
            raise ValueError("unacked bounds must be at least 1")
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.messages = 0
        self.bytes = 0

    def add(self, count: int, size: int) -> None:
        self.messages += count
        self.bytes += size

    def __repr__(self) -> str:
        return f"<UnackedTotals {self.messages}/{self.max_messages} {self.bytes}B>"


class _Marker:
    """A message sent past a bound: only its number, to keep its place."""

    __slots__ = ("seq",)

    def __init__(self, seq: int) -> None:
        self.seq = seq


class Unacked(Generic[T]):
    """One link's unacknowledged messages (see the module's rules)."""

    __slots__ = ("_by_socket", "bytes", "limits", "markers", "messages", "totals")

    def __init__(self, *, limits: UnackedLimits, totals: UnackedTotals) -> None:
        self.limits = limits
        self.totals = totals
        self._by_socket: dict[str, list[T | _Marker]] = {}
        self.messages = 0
        self.bytes = 0
        self.markers = 0

    def __len__(self) -> int:
        return self.messages

    def __bool__(self) -> bool:
        return bool(self._by_socket)

    def holds(self, client_uuid: str, seq: int | None = None) -> bool:
        """Whether this link holds a message of that socket (numbered ``seq``, if given)
        unacknowledged."""
        entries = self._by_socket.get(client_uuid)
        if seq is None or entries is None:
            return entries is not None
        return any(entry.seq == seq for entry in entries)

    def sent(self, item: T) -> AtMostOnce | None:
        """``item`` was written to the link: kept (None), or not, past the bound returned."""
        size = len(item.payload)
        totals = self.totals
        bound = None
        if self.messages >= self.limits.messages or self.bytes + size > self.limits.bytes:
            bound = AtMostOnce.LINK_BOUND
        elif totals.messages >= totals.max_messages or totals.bytes + size > totals.max_bytes:
            bound = AtMostOnce.NODE_BOUND
        entry: T | _Marker = item
        if bound is None:
            self.messages += 1
            self.bytes += size
            totals.messages += 1
            totals.bytes += size
        else:
            entry = _Marker(item.seq)
            self.markers += 1
        entries = self._by_socket.get(item.client_uuid)
        if entries is None:
            self._by_socket[item.client_uuid] = [entry]
        else:
            entries.append(entry)
        return bound

    def sent_all(self, items: Sequence[T]) -> list[AtMostOnce]:
        """``sent`` for each of ``items`` (one batch); the bounds that bit (usually none)."""
        limits, totals = self.limits, self.totals
        size = sum(len(item.payload) for item in items)
        count = len(items)
        if (
            self.messages + count > limits.messages
            or self.bytes + size > limits.bytes
            or totals.messages + count > totals.max_messages
            or totals.bytes + size > totals.max_bytes
        ):  # near a bound: one by one
            sent = self.sent
            return [bound for item in items if (bound := sent(item)) is not None]
        by_socket = self._by_socket
        for item in items:
            entries = by_socket.get(item.client_uuid)
            if entries is None:
                by_socket[item.client_uuid] = [item]
            else:
                entries.append(item)
        self.messages += count
        self.bytes += size
        totals.messages += count
        totals.bytes += size
        return []

    def ack(self, client_uuid: str, seq: int) -> int:
        """The upstream finished this socket's messages up to ``seq`` (in the order sent);
        how many kept messages that released."""
        by_socket = self._by_socket
        entries = by_socket.get(client_uuid)
        if not entries:
            return 0
        first = entries[0]
        if first.seq == seq and len(entries) == 1:  # the common case: one in flight
            del by_socket[client_uuid]
            if isinstance(first, _Marker):
                self.markers -= 1
                return 0
            size = len(first.payload)
            self.messages -= 1
            self.bytes -= size
            totals = self.totals
            totals.messages -= 1
            totals.bytes -= size
            return 1
        for index, entry in enumerate(entries):
            if entry.seq == seq:
                end = index + 1
                break
        else:
            return 0
        done = size = 0
        for entry in entries[:end]:
            if isinstance(entry, _Marker):
                self.markers -= 1
            else:
                done += 1
                size += len(entry.payload)
        if end == len(entries):
            del by_socket[client_uuid]
        else:
            del entries[:end]
        self.messages -= done
        self.bytes -= size
        self.totals.add(-done, -size)
        return done

    def take_all(self) -> list[T]:
        """Every kept message, per socket in the order sent; the link holds none after."""
        items = [entry for entry in self._each() if not isinstance(entry, _Marker)]
        self._by_socket = {}
        self.totals.add(-self.messages, -self.bytes)
        self.messages = self.bytes = self.markers = 0
        return items

    def _each(self) -> Iterator[T | _Marker]:
        for entries in self._by_socket.values():
            yield from entries

    def __repr__(self) -> str:
        return (
            f"<Unacked {self.messages}/{self.limits.messages} {self.bytes}B "
            f"sockets={len(self._by_socket)} markers={self.markers}>"
        )
