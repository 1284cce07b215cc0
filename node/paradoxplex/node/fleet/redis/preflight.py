"""The start-up check: can this Redis, as this user, do what a node will ask of it?

Rules:
- ``probe(client, prefix, target)`` runs ``commands(...)`` one by one on scratch keys under
  the prefix (``Keys.probe``) and one MULTI/EXEC, then deletes the keys: every command family
  the fleet state and the bus use (strings, hashes, sorted sets, sets, scripts, streams) on
  keys the node's ACL must allow. The bus uses no pub/sub: channels need no permission.
- The first write comes first (after PING), so a read-only replica and an ACL without the
  prefix fail there.
- ``tests/unit/test_redis_probe.py`` reads ``state``, ``bus``, ``inbox`` and ``outbox`` and fails
  when they use a command the probe does not try: a new command gets a row in ``commands``.
- The first failure is ``ConfigError`` (``errors.refused``): one line naming the cause and the
  setting; nothing is retried. The scratch keys are then deleted if Redis lets us.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import uuid
from dataclasses import dataclass

from paradoxplex.node.fleet.redis.client import FleetClient
from paradoxplex.node.fleet.redis.errors import REDIS_DOWN, Target, cancel_requested, refused
from paradoxplex.shared.keys import Keys

__all__ = ["Check", "commands", "probe", "scratch_keys"]

#: Milliseconds the scratch string lives (SET PX, as the liveness keys are written).
SCRATCH_TTL_MS = 60_000

_SCRIPT = "return redis.call('EXISTS', KEYS[1])"
_SCRIPT_SHA = hashlib.sha1(_SCRIPT.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Check:
    """One command the probe sends; ``verb`` is what it does to keys (``read``/``write``)."""

    args: tuple[str, ...]
    verb: str = "write"

    @property
    def command(self) -> str:
        return self.args[0]


def commands(scratch: str) -> list[Check]:
    """What the node will need, in the order tried (the first write first)."""
    text, hashed, ranked, members, stream = scratch_keys(scratch)
    return [
        Check(("PING",), "read"),
        Check(("SET", text, "1", "NX", "PX", str(SCRATCH_TTL_MS))),
        Check(("TIME",), "read"),
        Check(("GET", text), "read"),
        Check(("EXISTS", text), "read"),
        Check(("HSET", hashed, "f", "v")),
        Check(("HGET", hashed, "f"), "read"),
        Check(("HMGET", hashed, "f"), "read"),
        Check(("HGETALL", hashed), "read"),
        Check(("HEXISTS", hashed, "f"), "read"),
        Check(("HDEL", hashed, "f")),
        Check(("ZADD", ranked, "0", "m")),
        Check(("ZRANGE", ranked, "0", "-1"), "read"),
        Check(("ZRANGEBYLEX", ranked, "-", "+", "LIMIT", "0", "1"), "read"),
        Check(("ZSCORE", ranked, "m"), "read"),
        Check(("ZCARD", ranked), "read"),
        Check(("ZREMRANGEBYSCORE", ranked, "-inf", "-1")),
        Check(("ZREMRANGEBYRANK", ranked, "0", "-2")),
        Check(("ZREM", ranked, "m")),
        Check(("SADD", members, "m")),
        Check(("SMEMBERS", members), "read"),
        Check(("SREM", members, "m")),
        Check(("EVAL", _SCRIPT, "1", text), "read"),
        Check(("EVALSHA", _SCRIPT_SHA, "1", text), "read"),
        Check(("XADD", stream, "MAXLEN", "~", "16", "*", "f", "v")),
        Check(("XADD", stream, "NOMKSTREAM", "MAXLEN", "~", "16", "*", "f", "v")),
        Check(("PEXPIRE", stream, str(SCRATCH_TTL_MS))),
        Check(("XREAD", "COUNT", "1", "BLOCK", "1", "STREAMS", stream, "0-0"), "read"),
        Check(("XRANGE", stream, "-", "+", "COUNT", "1"), "read"),
        Check(("XREVRANGE", stream, "+", "-", "COUNT", "1"), "read"),
        Check(("XLEN", stream), "read"),
        Check(("XTRIM", stream, "MAXLEN", "0")),
        Check(("DEL", text, hashed, ranked, members, stream)),
    ]


def scratch_keys(scratch: str) -> tuple[str, str, str, str, str]:
    """The string, hash, sorted set, set and stream the probe writes."""
    return scratch, f"{scratch}:hash", f"{scratch}:zset", f"{scratch}:set", f"{scratch}:stream"


async def probe(client: FleetClient, *, prefix: str, target: Target) -> None:
    """Raise ``ConfigError`` when Redis will not serve a node as configured."""
    keys = Keys(prefix)
    nonce = uuid.uuid4().hex[:12]
    scratch = keys.probe(nonce)
    check = Check(("PING",), "read")
    try:
        for check in commands(scratch):
            await client.redis.execute_command(*check.args)  # type: ignore[no-untyped-call]
        check = Check(("MULTI",))
        await _transaction(client, scratch)
    except REDIS_DOWN as exc:
        if cancel_requested():
            raise asyncio.CancelledError from exc
        await _clean_up(client, scratch)
        raise refused(exc, target, command=check.command, verb=check.verb) from None


async def _clean_up(client: FleetClient, scratch: str) -> None:
    """Best effort, after a failed check: what a check wrote before a later one failed."""
    with contextlib.suppress(*REDIS_DOWN):
        await client.redis.delete(*scratch_keys(scratch))


async def _transaction(client: FleetClient, scratch: str) -> None:
    async with client.redis.pipeline(transaction=True) as pipe:
        pipe.set(scratch, b"1", px=SCRATCH_TTL_MS)
        pipe.delete(scratch)
        await pipe.execute()
