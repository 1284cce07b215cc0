"""The Lua scripts of the fleet state in Redis: what each is given, what it answers.

Rules:
- A script reads and writes the keys of one server only: the fleet-wide keys (tag
  ``{fleet}``: a node's claim and record, the idempotency records) or one bucket's session
  hash, so it runs whole in every Redis mode, like a MULTI.
- A check and the write it allows are one script (nothing runs between them): a claim is
  written only while no other incarnation holds the id, a session's fields only while it is
  registered, an idempotency record only as its verdict says.
- Each script's KEYS and ARGV are in the comment above it; ``Scripts`` registers them all
  once per client.
"""

from __future__ import annotations

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

# Claim a node id for an incarnation and write its record: KEYS alive, node, nodes;
# ARGV claim ('incarnation' or 'incarnation+predecessor'), ttl ms, node id, replacing flag
# ('1' or '0'), replaced, fields... A claim's holder is its first incarnation.
CLAIM = """
local stored = redis.call('GET', KEYS[1])
local holder = stored and string.match(stored, '^[^+]*')
local me = string.match(ARGV[1], '^[^+]*')
if holder and holder ~= me and not (ARGV[4] == '1' and holder == ARGV[5]) then
  return holder
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if holder ~= me then
  redis.call('DEL', KEYS[2])
end
redis.call('HSET', KEYS[2], unpack(ARGV, 6))
redis.call('SADD', KEYS[3], ARGV[3])
return false
"""

# Release a node id, unless another incarnation holds it: KEYS alive;
# ARGV check flag ('1': only if free or held by ARGV[2]), incarnation. 1 when released.
RELEASE = """
local stored = redis.call('GET', KEYS[1])
local holder = stored and string.match(stored, '^[^+]*')
if ARGV[1] == '1' and holder and holder ~= ARGV[2] then
  return 0
end
redis.call('DEL', KEYS[1])
return 1
"""

# Forget a released node's record, unless the id was claimed again meanwhile: KEYS alive,
# node, nodes; ARGV node id. 1 when forgotten.
FORGET = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('DEL', KEYS[2])
redis.call('SREM', KEYS[3], ARGV[1])
return 1
"""

# Overwrite a session's fields only while it is registered (no ghost after an unregister).
UPDATE_IF_EXISTS = """
local updated = 0
for i = 1, #ARGV, 2 do
  if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 1 then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
    updated = updated + 1
  end
end
return updated
"""

# An idempotency key's claim: the record as it stands, or a new pending one (see idempotency).
# KEYS: the record, the index. ARGV: fingerprint, pending ms, window ms, max keys.
CLAIM_ACTION = """
local held = redis.call('HMGET', KEYS[1], 'fp', 'answer')
if held[1] then
  if held[1] ~= ARGV[1] then return {'mismatch', '', 0} end
  if held[2] then return {'replay', held[2], 0} end
  return {'in_progress', '', 0}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('HSET', KEYS[1], 'fp', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local lived = (tonumber(ARGV[2]) + tonumber(ARGV[3])) * 1000
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - lived)
redis.call('ZADD', KEYS[2], now, KEYS[1])
local over = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[4])
if over <= 0 then return {'fresh', '', 0} end
local oldest = redis.call('ZRANGE', KEYS[2], 0, over - 1)
for _, name in ipairs(oldest) do redis.call('DEL', name) end
redis.call('ZREMRANGEBYRANK', KEYS[2], 0, over - 1)
return {'fresh', '', over}
"""
# KEYS: the record, the index. ARGV: fingerprint, answer, window ms.
SETTLE_ACTION = """
redis.call('HSET', KEYS[1], 'fp', ARGV[1], 'answer', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if not redis.call('ZSCORE', KEYS[2], KEYS[1]) then
  local t = redis.call('TIME')
  redis.call('ZADD', KEYS[2], tonumber(t[1]) * 1000000 + tonumber(t[2]), KEYS[1])
end
return 1
"""
# KEYS: the record, the index. ARGV: fingerprint.
RELEASE_ACTION = """
local held = redis.call('HMGET', KEYS[1], 'fp', 'answer')
if held[1] == ARGV[1] and not held[2] then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], KEYS[1])
  return 1
end
return 0
"""


class Scripts:
    """Every script, registered on one client (see the module's rules)."""

    __slots__ = (
        "claim",
        "claim_action",
        "forget",
        "release",
        "release_action",
        "settle_action",
        "update_if_exists",
    )

    def __init__(self, redis: Redis) -> None:
        self.claim: AsyncScript = redis.register_script(CLAIM)
        self.release: AsyncScript = redis.register_script(RELEASE)
        self.forget: AsyncScript = redis.register_script(FORGET)
        self.update_if_exists: AsyncScript = redis.register_script(UPDATE_IF_EXISTS)
        self.claim_action: AsyncScript = redis.register_script(CLAIM_ACTION)
        self.settle_action: AsyncScript = redis.register_script(SETTLE_ACTION)
        self.release_action: AsyncScript = redis.register_script(RELEASE_ACTION)
