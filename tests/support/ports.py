"""Ports on 127.0.0.1 for tests: one that is free now, or a run of them.

A port is only free the moment it is checked: bind the server to port 0 where it can be (and
read the port back); these are for what must be told its port before it starts (a process, an
upstream started later, a node that is not there).
"""

from __future__ import annotations

import socket
from collections.abc import Iterable


def free_port() -> int:
    """A port nothing listened on a moment ago (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def port_free(port: int) -> bool:
    """Whether a server could bind ``port`` now (servers set SO_REUSEADDR, so a port whose
    last connections wait in TIME_WAIT counts as free, as it is for them)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_range(count: int, *, avoid: Iterable[int] = ()) -> int:
    """A base port such that ``base .. base+count-1`` are free now (and not in ``avoid``)."""
    taken = set(avoid)
    for _ in range(200):
        base = free_port()
        ports = range(base, base + count)
        if base + count < 65535 and taken.isdisjoint(ports) and all(map(port_free, ports)):
            return base
    raise RuntimeError(f"no {count} consecutive free ports")
