"""Admin actions that are not one socket's, made idempotent: a broadcast, an upstream change,
a node drain, each at most once per ``Idempotency-Key``.

Rules:
- The key lives where the action's scope does (``ActionKeys``): the fleet state for
  fleet-wide actions (Redis, or the memory hub), ``LocalActions`` for what only this node
  does. Claim first, act, then store the answer: nothing acts without its key claimed, so a
  key that cannot be claimed (Redis down) is a 503 ``not_applied``.
- A refusal (404 ``UnknownUpstream``, 409 ``Conflict``) is the first call's answer too: it is
  stored and raised again on a replay (``REFUSALS``). Any other failure releases the key: its
  outcome stays ``unknown`` and a retry acts again (upstream changes come to the same state
  either way; a broadcast never fails after its claim: its publish failures are counted drops).
- An action that acted answers the truth even when its answer cannot be stored (counted as
  ``unrecorded``, logged): its pending claim expires after ``PENDING`` seconds.
- Replays, keys in progress, keys reused and keys evicted early are counted in
  ``paradoxplex_idempotency_total{event}``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import orjson

from paradoxplex.node.metrics import Metrics
from paradoxplex.shared.errors import (
    ActionInProgress,
    Conflict,
    FleetUnavailable,
    KeyReused,
    UnknownUpstream,
)
from paradoxplex.shared.idempotency import (
    COUNTED,
    PENDING,
    ActionRecords,
    Claim,
    IdempotencyEvent,
    Once,
    Verdict,
)

log = logging.getLogger("paradoxplex.admin")


class ActionKeys(Protocol):
    """Where the idempotency keys of actions that are not one socket's live: the fleet state
    (fleet-wide), or ``LocalActions`` (this node's own drain)."""

    async def claim_action(self, key: str, fingerprint: bytes) -> Claim[bytes]: ...
    async def settle_action(self, key: str, fingerprint: bytes, answer: bytes) -> None: ...
    async def release_action(self, key: str, fingerprint: bytes) -> None: ...


class LocalActions:
    """``ActionKeys`` in this process (for what only this node does)."""

    def __init__(self) -> None:
        self.records: ActionRecords[bytes] = ActionRecords()

    async def claim_action(self, key: str, fingerprint: bytes) -> Claim[bytes]:
        return self.records.begin(key, fingerprint, time.monotonic())

    async def settle_action(self, key: str, fingerprint: bytes, answer: bytes) -> None:
        self.records.finish(key, fingerprint, answer, time.monotonic())

    async def release_action(self, key: str, fingerprint: bytes) -> None:
        self.records.release(key, fingerprint)

    def __repr__(self) -> str:
        return f"<LocalActions {self.records!r}>"


# A refusal is the first call's answer too: recorded by kind, raised again on a replay.
REFUSALS: dict[type[Exception], str] = {
    UnknownUpstream: "unknown_upstream",
    Conflict: "conflict",
}
_REFUSED: dict[str, Callable[[str], Exception]] = {
    "unknown_upstream": UnknownUpstream,
    "conflict": Conflict,
}


def refusal_record(error: Exception) -> bytes | None:
    """The recorded form of an expected refusal, None for any other error."""
    kind = REFUSALS.get(type(error))
    if kind is None:
        return None
    argument = error.upstream_id if isinstance(error, UnknownUpstream) else str(error)
    return orjson.dumps({"refused": kind, "argument": argument})


def replay_record(answer: bytes) -> Any:
    """What a recorded answer was: the result, or the refusal raised again."""
    record = orjson.loads(answer)
    if "refused" in record:
        raise _REFUSED[record["refused"]](record["argument"])
    return record["result"]


class KeyedActions:
    """Runs actions at most once per key, counting what the keys did (see the rules)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def __repr__(self) -> str:
        return "<KeyedActions>"

    async def run(
        self, once: Once | None, keys: ActionKeys, act: Callable[[], Awaitable[Any]]
    ) -> Any:
        """``act()`` at most once per key in ``keys`` (see the rules)."""
        if once is None:
            return await act()
        try:
            claim = await keys.claim_action(once.key, once.fingerprint)
        except FleetUnavailable as error:  # not claimed: nothing acted
            raise error.not_applied() from None
        self._count(claim)
        if claim.verdict is Verdict.MISMATCH:
            raise KeyReused(once.key)
        if claim.verdict is Verdict.IN_PROGRESS:
            raise ActionInProgress(once.key)
        if claim.verdict is Verdict.REPLAY and claim.answer is not None:
            once.replayed = True
            return replay_record(claim.answer)
        try:
            result = await act()
        except Exception as error:
            refused = refusal_record(error)
            if refused is None:
                await self._release(keys, once)
                raise
            await self._settle(keys, once, refused)
            raise
        await self._settle(keys, once, orjson.dumps({"result": result}))
        return result

    def _count(self, claim: Claim[bytes]) -> None:
        count = self.metrics.idempotency.labels
        if claim.evicted:
            count(IdempotencyEvent.EVICTED).inc(claim.evicted)
        event = COUNTED.get(claim.verdict)
        if event is not None:
            count(event).inc()

    async def _settle(self, keys: ActionKeys, once: Once, answer: bytes) -> None:
        """Store the answer; an action that acted answers the truth even when that fails."""
        try:
            await keys.settle_action(once.key, once.fingerprint, answer)
        except FleetUnavailable as error:
            self.metrics.idempotency.labels(IdempotencyEvent.UNRECORDED).inc()
            log.warning(
                "an admin action acted, but its idempotency key could not be stored "
                "(a retry after %gs may act again): %s",
                PENDING,
                error.reason,
            )

    async def _release(self, keys: ActionKeys, once: Once) -> None:
        try:
            await keys.release_action(once.key, once.fingerprint)
        except FleetUnavailable:  # the pending record expires by itself
            self.metrics.fleet_errors.inc()
