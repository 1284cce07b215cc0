"""A closed loop of numbered requests over many sockets, and what became of each request.

- ``closed_loop(clients, seconds=...)``: every client (a collecting ``Client`` to a node with
  an echo upstream, raw framing: each line is read as one message since only one is in
  flight) sends one numbered line, waits for its echo, sends the next, for ``seconds`` (or
  until ``until`` is set: something happens meanwhile, a handoff); a request not answered
  within ``answer_timeout`` stops that client (its request is lost). Afterwards each
  client's ``Loop`` holds what it sent, every line it received and when each was answered
  (``worst_after``, ``answered_after``: the slowest answer and the answers since a moment).
- ``tally(loops)``: sent, answered, duplicates, out of order, lost (``Counts``), from the
  lines alone (``count_lines`` for one client; no I/O: unit-tested).
- ``metric(admin_url, name, **labels)``: one sample of a node's ``/metrics``.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiohttp

from tests.support.client import Client

ANSWER_TIMEOUT = 20.0


@dataclass(slots=True)
class Counts:
    """What became of the requests of one run (or one client)."""

    sent: int = 0
    answered: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    lost: int = 0
    foreign: int = 0  # lines received that were never sent

    def add(self, other: Counts) -> None:
        self.sent += other.sent
        self.answered += other.answered
        self.duplicates += other.duplicates
        self.out_of_order += other.out_of_order
        self.lost += other.lost
        self.foreign += other.foreign

    @property
    def exactly_once_in_order(self) -> bool:
        return (
            self.sent > 0
            and self.answered == self.sent
            and not (self.duplicates or self.out_of_order or self.lost or self.foreign)
        )

    def __str__(self) -> str:
        return (
            f"sent={self.sent} answered={self.answered} duplicates={self.duplicates} "
            f"out_of_order={self.out_of_order} lost={self.lost} foreign={self.foreign}"
        )


def count_lines(sent: Sequence[bytes], received: Sequence[bytes]) -> Counts:
    """Compare the lines one client sent with those it received, in order."""
    position = {line: index for index, line in enumerate(sent)}
    seen: set[bytes] = set()
    counts = Counts(sent=len(sent))
    last = -1
    for line in received:
        index = position.get(line)
        if index is None:
            counts.foreign += 1
            continue
        if line in seen:
            counts.duplicates += 1
            continue
        seen.add(line)
        if index < last:
            counts.out_of_order += 1
        last = max(last, index)
    counts.answered = len(seen)
    counts.lost = counts.sent - counts.answered
    return counts


@dataclass(slots=True)
class Loop:
    """One client's closed loop: the lines it sent (numbered) and received."""

    client: Client
    name: int
    sent: list[bytes] = field(default_factory=list)
    times: list[tuple[float, float]] = field(default_factory=list)  # (sent at, seconds)

    def line(self, number: int) -> bytes:
        return b"%03d %06d" % (self.name, number)

    @property
    def received(self) -> list[bytes]:
        return self.client.tokens(b"\n")

    def counts(self) -> Counts:
        return count_lines(self.sent, self.received)


async def closed_loop(
    clients: Sequence[Client],
    *,
    seconds: float = math.inf,
    until: asyncio.Event | None = None,
    answer_timeout: float = ANSWER_TIMEOUT,
    loops: list[Loop] | None = None,
) -> list[Loop]:
    """Run every client's closed loop for ``seconds`` or until ``until`` is set (see the
    module's rules); ``loops``: a list to fill as they start (to watch them run)."""
    loops = [] if loops is None else loops
    loops += [Loop(client, name) for name, client in enumerate(clients)]
    stop_at = asyncio.get_running_loop().time() + seconds
    stop = until or asyncio.Event()
    await asyncio.gather(*(_run(loop, stop_at, stop, answer_timeout) for loop in loops))
    return loops


async def _run(loop: Loop, stop_at: float, stop: asyncio.Event, answer_timeout: float) -> None:
    clock = asyncio.get_running_loop()
    while clock.time() < stop_at and not stop.is_set():
        line = loop.line(len(loop.sent) + 1)
        loop.sent.append(line)
        sent_at = clock.time()
        await loop.client.send(line + b"\n")
        try:
            await loop.client.expect(b"\n", times=len(loop.sent), within=answer_timeout)
        except AssertionError:
            return  # not answered: lost (counted from the lines)
        loop.times.append((sent_at, clock.time() - sent_at))


def worst_after(loops: Sequence[Loop], since: float) -> float:
    """The slowest answer to a request answered after loop time ``since``."""
    return max(
        (seconds for loop in loops for sent, seconds in loop.times if sent + seconds > since),
        default=0.0,
    )


def answered_after(loops: Sequence[Loop], moment: float) -> int:
    return sum(1 for loop in loops for sent, seconds in loop.times if sent + seconds > moment)


def tally(loops: Sequence[Loop]) -> Counts:
    total = Counts()
    for loop in loops:
        total.add(loop.counts())
    return total


SAMPLE = re.compile(r"^(?P<name>[a-z_]+)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$", re.MULTILINE)


async def metric(admin_url: str, name: str, **labels: str) -> float:
    """One sample of ``name`` (with exactly these ``labels``) from the node's /metrics."""
    async with aiohttp.ClientSession() as http, http.get(f"{admin_url}/metrics") as answer:
        text = await answer.text()
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    for found in SAMPLE.finditer(text):
        got = ",".join(sorted((found["labels"] or "").split(","))) if found["labels"] else ""
        if found["name"] == name and got == wanted:
            return float(found["value"])
    raise AssertionError(f"{name}{{{wanted}}} not in {admin_url}/metrics")
