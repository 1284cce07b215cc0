"""Telling systemd how the node is doing (``Type=notify``): ``READY=1`` once it serves, and
after a hot handoff ``MAINPID=<pid>`` from the new process, so that the unit follows it when
the old process exits (the unit needs ``NotifyAccess=all``).

Rules: nothing happens without ``NOTIFY_SOCKET`` in the environment (not under systemd, or a
unit of another type); a socket that cannot be reached is ignored (systemd logs it). An
address starting with ``@`` is in the abstract namespace.
"""

from __future__ import annotations

import os
import socket


def notify(*lines: str) -> bool:
    """Send ``lines`` (``READY=1``, ``MAINPID=123``, ...) to systemd; False when not under
    systemd or when it could not be told."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    target = "\0" + address[1:] if address.startswith("@") else address
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto("\n".join(lines).encode(), target)
    except OSError:
        return False
    return True
