"""The ``flood`` case: how long fresh clients wait while one socket floods the node.

One node (``--framing line``) in front of ``paradoxplex upstream-echo``. First, with no other
traffic, ``FRESH`` fresh clients in turn connect, send one line and read its echo (the node
strips the newline; the echo comes back without it); the round trip is timed from connect to
the whole echo. Then one client sends ``FLOOD_BYTES`` of newlines (each an empty message, about
4 million of them) and the same fresh clients are timed again while the node works through it.
Rows: p50 and max of both, and max(flood) / max(quiet).
"""

from __future__ import annotations

import contextlib
import socket
import statistics
import threading
import time
from collections.abc import Sequence

from bench.procs import BenchError

FLOOD_BYTES = 4 * 1024 * 1024
FRESH = 40
SPACING = 0.05  # seconds between fresh clients: the client's pace, not a wait for a state
TIMEOUT = 10.0


def fresh_round_trip(address: str, number: int) -> float:
    """Seconds from connecting to the whole echo of one line, on a new socket."""
    host, _, port = address.rpartition(":")
    line = f"fresh {number:05d}".encode()
    began = time.perf_counter()
    with socket.create_connection((host, int(port)), timeout=TIMEOUT) as sock:
        sock.sendall(line + b"\n")
        got = b""
        while len(got) < len(line):
            chunk = sock.recv(len(line) - len(got))
            if not chunk:
                raise BenchError(f"fresh client {number}: closed after {got!r}")
            got += chunk
    if got != line:
        raise BenchError(f"fresh client {number}: echo {got!r}, expected {line!r}")
    return time.perf_counter() - began


def wait_echo(address: str, *, timeout: float) -> None:
    """Return once a line comes back (the node has an upstream in rotation)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            fresh_round_trip(address, 0)
            return
        except (OSError, BenchError):
            if time.monotonic() > deadline:
                raise BenchError(f"no echo of a line from the node at {address}") from None
            time.sleep(0.2)


def fresh_round_trips(address: str, count: int = FRESH) -> list[float]:
    times = []
    for number in range(count):
        times.append(fresh_round_trip(address, number))
        time.sleep(SPACING)
    return times


class Flood:
    """A client that sends ``size`` bytes of newlines and reads (and discards) what comes back,
    in a thread; ``sent`` is set once the kernel took every byte."""

    def __init__(self, address: str, size: int = FLOOD_BYTES) -> None:
        host, _, port = address.rpartition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=TIMEOUT)
        self.size = size
        self.sent = threading.Event()
        self.error: BaseException | None = None
        self._sender = threading.Thread(target=self._send, daemon=True)
        self._reader = threading.Thread(target=self._read, daemon=True)

    def start(self) -> None:
        self._reader.start()
        self._sender.start()

    def _send(self) -> None:
        chunk = b"\n" * 65536
        try:
            for _ in range(self.size // len(chunk)):
                self.sock.sendall(chunk)
            self.sent.set()
        except OSError as error:
            self.error = error

    def _read(self) -> None:
        self.sock.settimeout(None)
        try:
            while self.sock.recv(65536):
                pass
        except OSError:
            pass

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self._sender.join(timeout=TIMEOUT)
        self._reader.join(timeout=TIMEOUT)


def summary(times: Sequence[float]) -> tuple[float, float]:
    """p50 and max, in milliseconds."""
    return statistics.median(times) * 1000, max(times) * 1000
