"""How messages between a node and an upstream are grouped into gRPC messages, both ways.

Rules:
- Both sides set the largest gRPC message they send and receive explicitly, ``MAX_MESSAGE``
  (64 MiB): the node on its channels, the SDK on its server. (gRPC's own default, 4 MiB, is
  what an upstream built from the original proto likely keeps: ``DEFAULT_MAX_BYTES`` stays
  well under that too.)
- A batch holds at most ``max_items`` messages and at most ``max_bytes`` bytes, counting each
  message's encoded size: by default 512 messages and 1 MiB, a 64th of ``MAX_MESSAGE``.
- A message larger than ``max_bytes`` goes alone, as a batch of one.
- A message that does not fit in one gRPC message even alone (over ``max_single``:
  ``max_message`` less ``ENVELOPE`` bytes for the batch's framing) is refused: the sender
  counts it and logs it, and the stream goes on.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_MESSAGE = 64 * 1024 * 1024
ENVELOPE = 4 * 1024
DEFAULT_MAX_ITEMS = 512
DEFAULT_MAX_BYTES = 1024 * 1024
# what an InputStreamRequest adds to its payload: tags, lengths, a 36-character uuid, the time
ITEM_OVERHEAD = 128


@dataclass(frozen=True, slots=True)
class BatchLimits:
    """The bounds of one direction's batches (see the module's rules)."""

    max_items: int = DEFAULT_MAX_ITEMS
    max_bytes: int = DEFAULT_MAX_BYTES
    max_message: int = MAX_MESSAGE

    def __post_init__(self) -> None:
        if self.max_items < 1:
            raise ValueError("max_items must be at least 1")
        if not 0 < self.max_bytes <= self.max_single:
            raise ValueError(f"max_bytes must be in 1-{self.max_single} (max_message - ENVELOPE)")

    @property
    def max_single(self) -> int:
        """The largest message that can be sent at all (alone)."""
        return self.max_message - ENVELOPE

    def fits(self, size: int) -> bool:
        """Whether a message of ``size`` encoded bytes can be sent (else: refuse it)."""
        return size <= self.max_single

    def admits(self, count: int, total: int, size: int) -> bool:
        """Whether a message of ``size`` bytes joins a batch holding ``count`` messages of
        ``total`` bytes; the first message of a batch always does."""
        return count == 0 or (count < self.max_items and total + size <= self.max_bytes)

    def split(self, sizes: list[int]) -> list[int]:
        """The lengths of consecutive batches for messages of these ``sizes``, in order."""
        lengths: list[int] = []
        count = total = 0
        for size in sizes:
            if not self.admits(count, total, size):
                lengths.append(count)
                count = total = 0
            count += 1
            total += size
        if count:
            lengths.append(count)
        return lengths
