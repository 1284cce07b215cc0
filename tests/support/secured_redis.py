"""Redis servers that refuse a node, as users meet them: a password, ACL users kept off what
the node needs, and a read-only replica.

- ``secured()``: a redis-server with ``--requirepass ADMIN_PASSWORD`` and the ``USERS`` below
  (each ``on``, password ``USER_PASSWORD``).
- ``replica_of(server)``: a redis-server replicating it (``--replicaof``), read-only.
- ``url(server, user, password)``: a URL logging in as that user.
"""

from __future__ import annotations

from urllib.parse import quote

import redis

from tests.support.redis_server import RedisServer

ADMIN_PASSWORD = "admin-pw-5eb1c0"
USER_PASSWORD = "user-pw-9d4e77"

#: ACL user → its rules besides ``on`` and its password.
USERS = {
    "elsewhere": "~other:* &* +@all",  # may not touch the prefix at all
    "nochannels": "~* resetchannels +@all",  # keys yes, pub/sub channels no
    "noxadd": "~* &* +@all -xadd",  # no streams
    "nosubscribe": "~* &* +@all -subscribe",
    "probeonly": "~*:probe:* &* +@all",  # passes the probe, then fails registering the node
}


def url(server: RedisServer, user: str = "", password: str = "") -> str:
    login = f"{quote(user, safe='')}:{quote(password, safe='')}@" if user or password else ""
    return f"redis://{login}{server.host}:{server.port}/0"


def secured() -> RedisServer:
    """A started server that needs a password, with the ACL users of ``USERS``."""
    server = RedisServer(args=["--requirepass", ADMIN_PASSWORD]).start()
    admin = redis.Redis(host=server.host, port=server.port, password=ADMIN_PASSWORD)
    try:
        for user, rules in USERS.items():
            setuser = ("ACL", "SETUSER", user, "reset", "on", f">{USER_PASSWORD}", *rules.split())
            admin.execute_command(*setuser)  # type: ignore[no-untyped-call]
    finally:
        admin.close()
    return server


def replica_of(server: RedisServer) -> RedisServer:
    """A started read-only replica of ``server`` (it answers PING; writes are refused)."""
    return RedisServer(
        args=[
            "--replicaof", server.host, str(server.port),
            "--masterauth", ADMIN_PASSWORD,
        ]
    ).start()  # fmt: skip
