"""What a test module left behind on its event loop: found, closed and named before the loop
closes (the conftest's ``_module_leftovers`` fails the module with ``report``).

Why before: uvloop closes a transport still open at ``loop.close()`` with a ResourceWarning,
and our warnings are errors; the close then hangs (a transport still reading: the run ends at
its timeout) or fails with EBUSY, and under one loop for the whole run that was charged to
whichever test came last. Garbage is collected first, so that an unclosed client's
``__del__`` warns now (an unraisable warning: the module's last test fails on it too).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from typing import Any

__all__ = ["close_leftovers"]

#: How long the module's other tasks get to end by themselves before they count as left.
SETTLE = 1.0
#: How long cancelled tasks get to end.
TASK_GRACE = 5.0


def _kind_of(kind: type) -> str:
    """``"transport"``, ``"server"`` or ``""`` for objects of type ``kind`` (uvloop's are not
    asyncio's subclasses: they are known by their module and name)."""
    if kind.__module__ == "uvloop.loop":
        if kind.__name__.endswith("Transport"):
            return "transport"
        return "server" if kind.__name__ == "Server" else ""
    if issubclass(kind, asyncio.BaseTransport):
        return "transport"
    return "server" if issubclass(kind, asyncio.AbstractServer) else ""


def _open(obj: Any) -> bool:
    try:
        return not obj.is_closing()
    except Exception:  # a transport of a loop already closed: not ours to close
        return False


def still_open() -> tuple[list[Any], list[Any]]:
    """The transports not closed or closing and the servers still serving, among live objects
    (one pass over them; each type is looked at once)."""
    kinds: dict[type, str] = {}
    transports: list[Any] = []
    servers: list[Any] = []
    for obj in gc.get_objects():
        kind = type(obj)
        what = kinds.get(kind)
        if what is None:
            what = kinds[kind] = _kind_of(kind)
        if what == "transport" and _open(obj):
            transports.append(obj)
        elif what == "server" and obj.is_serving():
            servers.append(obj)
    return transports, servers


def describe(transport: Any) -> str:
    protocol = transport.get_protocol()
    local = transport.get_extra_info("sockname")
    peer = transport.get_extra_info("peername")
    return f"{type(transport).__name__} {local} -> {peer} ({type(protocol).__qualname__})"


async def close_leftovers() -> list[str]:
    """Let the loop's other tasks end (``SETTLE`` seconds), cancel those that do not; collect
    garbage; close every transport and server still open. One line for each thing left."""
    left: list[str] = []
    current = asyncio.current_task()
    tasks = [task for task in asyncio.all_tasks() if task is not current]
    if tasks:  # e.g. a stopped gRPC server's handlers end a few turns after stop() returned
        _, running = await asyncio.wait(tasks, timeout=SETTLE)
        for task in running:
            left.append(f"task still running {task.get_name()!r}: {task.get_coro()!r}")
            task.cancel()
        if running:
            await asyncio.wait(running, timeout=TASK_GRACE)
    gc.collect()
    transports, servers = still_open()
    for transport in transports:
        left.append(f"open transport {describe(transport)}")
        with contextlib.suppress(Exception):
            transport.abort()
    for server in servers:
        left.append(f"server still serving {server!r}")
        server.close()
    await asyncio.sleep(0)  # the transports' connection_lost callbacks run now
    return left
