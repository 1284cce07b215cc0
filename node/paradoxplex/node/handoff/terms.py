"""What must match between the old and the new process for a handoff: the ``Terms``.

Rules:
- The node id: the new process takes the old one's when it was given none (``""``); a
  different one is refused (the fleet knows the sockets by node id).
- The listener and the admin API as configured, the framing and ``max_frame`` (a socket
  moves in the middle of a frame), PROXY protocol and TLS on the listener, the fleet (memory,
  or Redis with its key prefix) and the handoff protocol: equal, else refused.
- Everything else may differ: that is what an upgrade or a restart for a setting is for.
- ``refusal`` says why in one line naming the setting, or None.
"""

from __future__ import annotations

from dataclasses import dataclass

from paradoxplex.shared.config import NodeConfig

#: Raised only for a change an older peer would misread (see handoff.proto).
PROTOCOL = 1


@dataclass(frozen=True, slots=True)
class Terms:
    protocol: int
    node_id: str
    listen: str
    framing: str
    max_frame: int
    proxy_protocol: bool
    tls: bool
    fleet: str
    admin: str
    workers: int = 1


def terms_of(config: NodeConfig) -> Terms:
    fleet = f"redis:{config.key_prefix}" if config.redis else "memory"
    return Terms(
        protocol=PROTOCOL,
        node_id=config.node_id,
        listen=str(config.listen),
        framing=config.framing,
        max_frame=config.max_frame,
        proxy_protocol=config.proxy_protocol,
        tls=bool(config.tls_cert),
        fleet=fleet,
        admin=str(config.admin),
        workers=config.workers,
    )


#: (field, the setting to name) compared for equality, in this order.
SAME = (
    ("listen", "--listen"),
    ("framing", "--framing"),
    ("max_frame", "--max-frame"),
    ("proxy_protocol", "--proxy-protocol"),
    ("tls", "--tls-cert"),
    ("fleet", "--redis/--key-prefix"),
    ("admin", "--admin"),
)


def refusal(old: Terms, new: Terms) -> str | None:
    """Why ``new`` cannot take over from ``old``, in one line; None when it can."""
    if new.protocol != old.protocol:
        return f"handoff protocol {new.protocol} cannot talk to protocol {old.protocol}"
    if new.node_id and new.node_id != old.node_id:
        return f"different --node-id: the running node is {old.node_id!r}, not {new.node_id!r}"
    if old.workers != 1 or new.workers != 1:
        return "--workers: a handoff moves one process"
    for name, flag in SAME:
        mine, theirs = getattr(old, name), getattr(new, name)
        if mine != theirs:
            return f"different {flag}: the running node has {_shown(mine)}, not {_shown(theirs)}"
    return None


def _shown(value: object) -> str:
    if isinstance(value, bool):
        return "it on" if value else "it off"
    return str(value)
