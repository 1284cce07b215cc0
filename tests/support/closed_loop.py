"""Clients in a closed loop: each socket sends a numbered line, waits for its echo, repeats.

- ``ClosedLoop.connect(address, count)`` opens the sockets; ``run()`` loops until ``stop()``;
  ``check_quiet()`` then says whether anything more arrived (a reply twice would).
- Each request is answered exactly once or the loop records why (``problems``): a reply that is
  not the line just sent, a socket the other end closed, a request unanswered for ``patience``
  seconds. ``latencies`` holds (sent at, seconds) per request; ``worst_after(t)`` the slowest
  answer to a request in flight at or after loop time ``t``.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from paradoxplex.shared.config import parse_address


@dataclass(slots=True)
class Loop:
    name: str
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    answered: int = 0
    latencies: list[tuple[float, float]] = field(default_factory=list)


class ClosedLoop:
    def __init__(self, loops: list[Loop], *, patience: float = 10.0) -> None:
        self.loops = loops
        self.patience = patience
        self.problems: list[str] = []
        self._stop = asyncio.Event()

    @classmethod
    async def connect(cls, address: str, count: int, *, prefix: str = "c") -> ClosedLoop:
        target = parse_address("address", address)
        loops = []
        for index in range(count):
            reader, writer = await asyncio.open_connection(target.host, target.port)
            loops.append(Loop(f"{prefix}{index}", reader, writer))
        return cls(loops)

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        await asyncio.gather(*(self._loop(each) for each in self.loops))

    async def _loop(self, each: Loop) -> None:
        loop = asyncio.get_running_loop()
        number = 0
        while not self._stop.is_set():
            request = f"{each.name}-{number}\n".encode()
            sent = loop.time()
            each.writer.write(request)
            try:
                async with asyncio.timeout(self.patience):
                    reply = await each.reader.readexactly(len(request))
            except asyncio.IncompleteReadError:
                self.problems.append(f"{each.name}: closed by the other end at #{number}")
                return
            except TimeoutError:
                self.problems.append(f"{each.name}: #{number} unanswered for {self.patience} s")
                return
            if reply != request:
                self.problems.append(f"{each.name}: sent {request!r}, got {reply!r}")
                return
            each.latencies.append((sent, loop.time() - sent))
            each.answered += 1
            number += 1

    @property
    def answered(self) -> int:
        return sum(each.answered for each in self.loops)

    def worst_after(self, since: float) -> float:
        """The slowest answer to a request sent at or after ``since`` (or in flight then)."""
        worst = 0.0
        for each in self.loops:
            for sent, seconds in each.latencies:
                if sent + seconds >= since:
                    worst = max(worst, seconds)
        return worst

    def answered_after(self, moment: float) -> int:
        return sum(
            1 for each in self.loops for sent, seconds in each.latencies if sent + seconds > moment
        )

    async def check_quiet(self, within: float = 0.5) -> None:
        """Nothing more arrives on any socket for ``within`` seconds (a reply delivered twice
        would), and none is closed."""
        await asyncio.sleep(within)  # a duration to watch, not a wait for a state
        for each in self.loops:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.001):
                    extra = await each.reader.read(1024)
                    what = f"{extra!r} arrived after the end" if extra else "closed"
                    self.problems.append(f"{each.name}: {what}")

    async def close(self) -> None:
        for each in self.loops:
            each.writer.close()
        for each in self.loops:
            with contextlib.suppress(OSError):
                await each.writer.wait_closed()
