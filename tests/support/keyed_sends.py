"""Numbered admin sends with idempotency keys, made as a careful client makes them, and what
came of them: the harness of the fault-matrix tests.

- ``KeyedSends(admins)``: ``send(n, uuid)`` posts ``<n>`` to the socket with the key
  ``send-<n>``, through the admins in turn (a retry may go through another node, as a client
  behind a load balancer would). A *retried* send is tried again with the same key while it
  is answered 503, 504, 409 or not at all, until ``budget`` seconds have passed; a *one-shot*
  send (``retry=False``) is sent once, and its answer must tell the truth on its own. Every
  attempt is kept: status (0: no answer), outcome, ``Idempotent-Replayed``.
- ``Tally.of(...)``: answers by status/outcome, final answers, arrivals and duplicates, and
  ``problems()``: what breaks the promises (a number that arrived twice; a one-shot answered
  ``not_applied`` that arrived; an answer 200 that never arrived; a retried send to a live
  socket that never got its 200; a 404 for a socket that was alive).
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import aiohttp

from tests.support.client import Client
from tests.support.fleet import Admin

NUMBERED = re.compile(rb"<(\d+)>")
#: Answers after which a careful client tries again with the same key (0: no answer at all).
RETRIED = frozenset({0, 409, 503, 504})


@dataclass(frozen=True, slots=True)
class Attempt:
    status: int
    outcome: str | None = None
    replayed: bool = False

    @property
    def label(self) -> str:
        """``200``, ``200 replayed``, ``504 unknown``, ``503 not_applied``, ``0 no answer``."""
        if self.status == 0:
            return "0 no answer"
        if self.outcome is not None:
            return f"{self.status} {self.outcome}"
        return f"{self.status} replayed" if self.replayed else str(self.status)


@dataclass(slots=True)
class Sent:
    number: int
    uuid: str
    retried: bool
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def final(self) -> Attempt:
        return self.attempts[-1]


class KeyedSends:
    """Sends made and their attempts (see the module's docstring)."""

    def __init__(
        self, admins: Sequence[Admin], *, budget: float = 15.0, first_wait: float = 0.2
    ) -> None:
        self.admins = list(admins)
        self.budget = budget
        self.first_wait = first_wait
        self.sent: dict[int, Sent] = {}

    def __repr__(self) -> str:
        return f"<KeyedSends sent={len(self.sent)} budget={self.budget}>"

    async def send(self, number: int, uuid: str, *, retry: bool = True) -> Sent:
        sent = self.sent[number] = Sent(number, uuid, retry)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.budget
        for tried in itertools.count():
            admin = self.admins[(number + tried) % len(self.admins)]
            attempt = await self._attempt(admin, number, uuid)
            sent.attempts.append(attempt)
            if not retry or attempt.status not in RETRIED or loop.time() >= deadline:
                return sent
            await asyncio.sleep(min(self.first_wait * 2**tried, 1.0))
        raise AssertionError("unreachable")

    async def _attempt(self, admin: Admin, number: int, uuid: str) -> Attempt:
        path = f"/v1/sockets/{uuid}/send"
        try:
            async with asyncio.timeout(10):
                status, body, replayed = await admin.exchange(
                    "POST", path, {"text": f"<{number}>"}, key=f"send-{number}"
                )
        except (aiohttp.ClientError, TimeoutError):
            return Attempt(0)
        outcome = None
        if status in (503, 504) and isinstance(body, dict):
            outcome = str(body["error"]["outcome"])
        return Attempt(status, outcome, replayed)


def arrived(clients: Iterable[Client]) -> Counter[int]:
    """How often each number reached the sockets."""
    return Counter(int(n) for client in clients for n in NUMBERED.findall(bytes(client.received)))


@dataclass(slots=True)
class Tally:
    answers: Counter[str]
    finals: Counter[str]
    sent: int
    arrivals: int
    duplicates: dict[int, int]
    problems_found: list[str]

    @classmethod
    def of(
        cls,
        sends: Iterable[Sent],
        got: Counter[int],
        *,
        live: set[str],
        must_land: set[str] | None = None,
    ) -> Tally:
        """``live``: the sockets alive throughout (a 404 for them breaks the promise);
        ``must_land``: those every retried send must reach (default: ``live``)."""
        must_land = live if must_land is None else must_land
        sends = list(sends)
        problems: list[str] = []
        for sent in sends:
            labels = [attempt.label for attempt in sent.attempts]
            times = got[sent.number]
            if times > 1:
                problems.append(f"<{sent.number}> arrived {times} times: {labels}")
            if any(attempt.status == 200 for attempt in sent.attempts) and times == 0:
                problems.append(f"<{sent.number}> answered 200 never arrived: {labels}")
            if sent.uuid in live and any(attempt.status == 404 for attempt in sent.attempts):
                problems.append(f"<{sent.number}> answered 404 for a live socket: {labels}")
            not_applied = sent.final.outcome == "not_applied"
            if not_applied and times:
                problems.append(f"<{sent.number}> answered not_applied arrived: {labels}")
            if sent.retried and sent.uuid in must_land and times != 1:
                problems.append(f"<{sent.number}> retried, arrived {times} times: {labels}")
        return cls(
            answers=Counter(attempt.label for sent in sends for attempt in sent.attempts),
            finals=Counter(sent.final.label for sent in sends),
            sent=len(sends),
            arrivals=sum(1 for sent in sends if got[sent.number]),
            duplicates={n: times for n, times in got.items() if times > 1},
            problems_found=problems,
        )

    def summary(self, fault: str) -> str:
        return (
            f"{fault}: {self.sent} sends, attempts {dict(sorted(self.answers.items()))}, "
            f"finals {dict(sorted(self.finals.items()))}, arrived {self.arrivals}, "
            f"duplicates {len(self.duplicates)}"
        )
