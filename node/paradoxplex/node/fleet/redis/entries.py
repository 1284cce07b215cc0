"""How an envelope sits in a Redis Stream entry (no I/O).

An entry has two fields, the same two in every entry (Redis then stores the names once):
``m``, the meta ``<kind>|<epoch>|<seq>|<total>|<count>|<sender>``, and ``d``, the envelope.
Kinds: ``d`` for one node, ``b`` broadcast (every node but its sender), ``c`` control (every
node), ``t`` tail (repeats the last seq and total, carries nothing), ``h`` hello (a reader
marking where it starts; skipped).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BROADCAST", "CONTROL", "DIRECT", "HELLO", "TAIL", "Meta", "fields", "hello"]

DIRECT = b"d"
BROADCAST = b"b"
CONTROL = b"c"
TAIL = b"t"
HELLO = b"h"


@dataclass(frozen=True, slots=True)
class Meta:
    kind: bytes
    epoch: int
    seq: int
    total: int
    count: int
    sender: str

    def encode(self) -> bytes:
        numbers = b"%d|%d|%d|%d|" % (self.epoch, self.seq, self.total, self.count)
        return self.kind + b"|" + numbers + self.sender.encode()

    @classmethod
    def decode(cls, raw: bytes) -> Meta:
        """Raises ``ValueError`` on a malformed meta."""
        kind, epoch, seq, total, count, sender = raw.split(b"|", 5)
        return cls(kind, int(epoch), int(seq), int(total), int(count), sender.decode())


def fields(meta: bytes, data: bytes) -> tuple[bytes, bytes, bytes, bytes]:
    """The field/value list of an XADD."""
    return (b"m", meta, b"d", data)


def hello(sender: str) -> bytes:
    return Meta(HELLO, 0, 0, 0, 0, sender).encode()
