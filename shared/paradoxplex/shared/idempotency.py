"""Idempotency keys for admin actions (the IETF httpapi draft's ``Idempotency-Key``): whatever
the number of tries, one key acts at most once, and every try answers what the first did.

Rules:
- A key is the header's value, compared as it is (opaque; a Structured Field string's quotes
  are part of it): 1 to ``MAX_KEY_LENGTH`` printable ASCII characters, no space at either end
  (``parse_key``; anything else is ``InvalidRequest("Idempotency-Key", ...)``).
- A request's fingerprint is a digest of what it asks, not of its bytes: the operation, its
  path parameters and its parsed body (``fingerprint``): ``{"text": "a"}`` and
  ``{"base64": "YQ=="}`` ask the same. A key seen with another fingerprint is refused (422).
- ``ActionRecords`` is one store of records, in memory: per key, the fingerprint and, once
  the action is done, its answer. ``begin`` decides (``Verdict``): ``FRESH`` (act, then
  ``finish``; or ``release`` when the action did not act), ``REPLAY`` (the answer of the
  first call), ``IN_PROGRESS`` (another call with this key is acting now: 409) or
  ``MISMATCH`` (422). Time is a parameter.
- A record lives ``WINDOW`` seconds (10 minutes) from its answer (a pending one from its
  start). At most ``max_keys`` (``MAX_KEYS``) are kept: past that the oldest goes before its
  window ends, and ``Claim.evicted`` says so (the caller counts it: that key could act again).
- A hot handoff carries a store to the new process (``done`` then ``restore``): the records
  whose action answered, each with the time its window has left; pending ones are not (the
  old process lets what is under way answer before it hands over).
- ``Outcome`` (``errors``): what a 503 or 504 says about the action: ``NOT_APPLIED`` (this
  node knows it did not act and will not) or ``UNKNOWN`` (retry with the same key: the
  record makes the retry replay instead of acting twice).
"""

from __future__ import annotations

import enum
import hashlib
import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from paradoxplex.shared.errors import InvalidRequest, Outcome

__all__ = [
    "COUNTED",
    "HEADER",
    "MAX_KEYS",
    "PENDING",
    "REPLAYED_HEADER",
    "WINDOW",
    "ActionRecords",
    "Claim",
    "IdempotencyEvent",
    "Once",
    "Outcome",
    "Verdict",
    "fingerprint",
    "parse_key",
]

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
#: How long a key is remembered after its answer (at least 10 minutes: the contract).
WINDOW = 600.0
#: How long a key whose action has not answered yet holds other tries off (409) before it is
#: given up (the node acting on it died): longer than any action takes (the bus holds 10 s).
PENDING = 60.0
#: Records per store (a node's, for its sockets; the fleet's, for broadcasts and upstreams).
MAX_KEYS = 100_000
#: Printable ASCII, no space at either end (a header value loses those on the way).
KEY_PATTERN = f"[!-~](?:[ -~]{{0,{MAX_KEY_LENGTH - 2}}}[!-~])?"
_KEY = re.compile(KEY_PATTERN)

A = TypeVar("A")


class IdempotencyEvent(enum.StrEnum):
    """What ``paradoxplex_idempotency_total{event}`` counts; the value is the label."""

    REPLAYED = "replayed"  # a call answered with the first call's answer, not acted again
    IN_PROGRESS = "in_progress"  # a call refused (409): one with its key was acting
    KEY_REUSED = "key_reused"  # a call refused (422): its key came with another request
    EVICTED = "evicted"  # a record dropped before its window ended, to stay in bounds
    UNRECORDED = "unrecorded"  # a fleet-wide action acted, but its answer could not be stored


class Verdict(enum.Enum):
    FRESH = "fresh"
    REPLAY = "replay"
    IN_PROGRESS = "in_progress"
    MISMATCH = "mismatch"


#: The verdicts that are counted, and as what (a fresh claim is not).
COUNTED: dict[Verdict, IdempotencyEvent] = {
    Verdict.REPLAY: IdempotencyEvent.REPLAYED,
    Verdict.IN_PROGRESS: IdempotencyEvent.IN_PROGRESS,
    Verdict.MISMATCH: IdempotencyEvent.KEY_REUSED,
}


@dataclass(frozen=True, slots=True)
class Claim(Generic[A]):
    """What ``begin`` decided; ``answer`` is set for ``REPLAY``; ``evicted`` records went
    before their window ended to make room."""

    verdict: Verdict
    answer: A | None = None
    evicted: int = 0


@dataclass(slots=True)
class Once:
    """One keyed request as the admin API hands it on: the key, the fingerprint of what it
    asks, and (set by whoever answers it) whether the answer is a replay."""

    key: str
    fingerprint: bytes
    replayed: bool = False


def parse_key(value: str | None) -> str | None:
    """The header's key, None when absent; ``InvalidRequest`` when malformed."""
    if value is None:
        return None
    if not _KEY.fullmatch(value):
        raise InvalidRequest(
            HEADER,
            f"must be 1 to {MAX_KEY_LENGTH} printable ASCII characters, "
            "without a space at either end",
        )
    return value


Part = str | bytes | int | None | Mapping[str, str]


def fingerprint(operation: str, *parts: Part) -> bytes:
    """A 16-byte digest of an operation and its parts; each part is length-prefixed, so
    ``("ab", "c")`` and ``("a", "bc")`` differ, and a mapping is taken in key order."""
    digest = hashlib.blake2b(digest_size=16)
    for piece in _pieces(operation, parts):
        digest.update(len(piece).to_bytes(8, "big"))
        digest.update(piece)
    return digest.digest()


def _pieces(operation: str, parts: Iterable[Part]) -> Iterable[bytes]:
    yield operation.encode()
    for part in parts:
        if part is None:
            yield b"\x00none"
        elif isinstance(part, bytes):
            yield b"b" + part
        elif isinstance(part, str):
            yield b"s" + part.encode("utf-8", "surrogatepass")
        elif isinstance(part, int):
            yield b"i" + str(part).encode()
        else:
            yield b"m%d" % len(part)
            for key in sorted(part):
                yield from _pieces(key, [part[key]])


@dataclass(slots=True)
class _Record(Generic[A]):
    fingerprint: bytes
    expires: float
    answer: A | None = None
    done: bool = False


class ActionRecords(Generic[A]):
    """Keys seen lately and their answers, bounded in time and number (see the rules)."""

    def __init__(
        self,
        *,
        window: float = WINDOW,
        pending: float = PENDING,
        max_keys: int = MAX_KEYS,
    ) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self.window = window
        self.pending = pending
        self.max_keys = max_keys
        self._records: OrderedDict[str, _Record[A]] = OrderedDict()
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._records)

    def begin(self, key: str, fingerprint: bytes, now: float) -> Claim[A]:
        """Whether a call with ``key`` may act now (see ``Verdict``)."""
        self._expire(now)
        record = self._records.get(key)
        if record is not None and record.expires <= now:  # a pending one, given up
            del self._records[key]
            record = None
        if record is not None:
            if record.fingerprint != fingerprint:
                return Claim(Verdict.MISMATCH)
            if record.done:
                return Claim(Verdict.REPLAY, record.answer)
            return Claim(Verdict.IN_PROGRESS)
        evicted = 0
        while len(self._records) >= self.max_keys:
            self._records.popitem(last=False)
            evicted += 1
        self.evicted += evicted
        self._records[key] = _Record(fingerprint, now + self.pending)
        return Claim(Verdict.FRESH, evicted=evicted)

    def finish(self, key: str, fingerprint: bytes, answer: A, now: float) -> None:
        """The action of ``key`` answered ``answer``: replayed for ``window`` seconds."""
        self._records.pop(key, None)  # to the end: the order is the order of expiry
        self._records[key] = _Record(fingerprint, now + self.window, answer, done=True)

    def done(self, now: float) -> list[tuple[str, bytes, float, A]]:
        """The records whose action answered: ``(key, fingerprint, seconds left, answer)``,
        oldest first."""
        self._expire(now)
        return [
            (key, record.fingerprint, record.expires - now, record.answer)
            for key, record in self._records.items()
            if record.done and record.answer is not None and record.expires > now
        ]

    def restore(self, records: Iterable[tuple[str, bytes, float, A]], now: float) -> None:
        """Take ``done`` records of another store (oldest first), each for the seconds it
        had left (at most ``window``), within ``max_keys``."""
        for key, fingerprint, left, answer in records:
            if left <= 0:
                continue
            while len(self._records) >= self.max_keys:
                self._records.popitem(last=False)
                self.evicted += 1
            self._records.pop(key, None)
            expires = now + min(left, self.window)
            self._records[key] = _Record(fingerprint, expires, answer, done=True)

    def release(self, key: str, fingerprint: bytes) -> None:
        """The action of ``key`` (asked as ``fingerprint``) did not act: a later call may."""
        record = self._records.get(key)
        if record is not None and not record.done and record.fingerprint == fingerprint:
            del self._records[key]

    def _expire(self, now: float) -> None:
        """Drop expired records from the old end (a pending one, shorter-lived, may wait
        behind a done one: ``begin`` checks the record it finds)."""
        records = self._records
        while records:
            key, record = next(iter(records.items()))
            if record.expires > now:
                return
            del records[key]

    def __repr__(self) -> str:
        return f"<ActionRecords keys={len(self._records)} evicted={self.evicted}>"
