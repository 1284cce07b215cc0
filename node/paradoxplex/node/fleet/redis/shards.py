"""Several independent Redis servers as one: each command goes to the shard holding its key.

Centrifugo's model: no server knows the others; the client spreads keys by consistent hash.

Rules:
- ``client.sharded(parts)`` builds a ``FleetClient`` over N shard clients (each of its own
  kind: one server, Sentinel, ...) around a ``ShardedRedis``, in the order given; ``buckets``
  is N. A key's shard is
  ``placement.shard_of``: bucket ``b`` lives on shard ``b``, the fleet-wide keys (node registry,
  upstreams, health, locks: tag ``{fleet}``) on shard 0, the designated shard. They stay in one
  place rather than on every shard because they are small, read-mostly and must read the same
  from every node; writing them everywhere would need agreement between servers that never
  talk. The fleet stream is the exception the layout makes: one copy per bucket, written by
  the sender to each (``outbox``), so a node reads its inbox and broadcasts from one server.
- A command goes where its first key lives (``EVALSHA``/``EVAL``: the first of its keys;
  ``XREAD``: the first stream). The fleet's layout puts every key of a command in one bucket.
  A command without a key (``PING``, ``SCRIPT LOAD``) goes to every shard; the first answer is
  returned (every shard answered).
- A pipeline is split by shard and the parts run at once; the replies come back in the order
  of the commands. A MULTI that would span shards is a programming error (``ValueError``).
- ``FleetClient.holding(key)`` gives the shard client that holds ``key`` (the inbox reader
  connects there).
- Every node must be given the same list in the same order: ``check_list`` stores the list's
  fingerprint on every shard (``Keys.shard_list``) and refuses another one in one line.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from types import TracebackType
from typing import Any, cast

from redis.asyncio import Redis
from redis.commands import AsyncCoreCommands
from redis.commands.core import AsyncScript
from redis.typing import ScriptTextT

from paradoxplex.node.tasks import all_of
from paradoxplex.shared.credentials import redact_url
from paradoxplex.shared.errors import ConfigError
from paradoxplex.shared.keys import Keys
from paradoxplex.shared.placement import fingerprint, shard_of

__all__ = ["ShardedPipeline", "ShardedRedis", "check_list", "shard_key"]

_KEYLESS = frozenset({"PING", "SCRIPT LOAD", "SCRIPT FLUSH", "INFO", "DBSIZE"})

Call = tuple[tuple[Any, ...], dict[str, Any]]


def shard_key(args: Sequence[Any]) -> Any | None:
    """The key a command is routed by, None for a command without one."""
    name = str(args[0]).upper()
    if name in _KEYLESS or len(args) < 2:
        return None
    if name in ("EVALSHA", "EVAL"):
        return args[3] if int(args[2]) > 0 else None
    if name == "XREAD":
        upper = [str(arg).upper() for arg in args]
        return args[upper.index("STREAMS") + 1]
    return args[1]


class ShardedRedis(AsyncCoreCommands):
    """Redis commands over ``shards``, each sent to the shard holding its key."""

    _event_dispatcher: Any = None  # redis-py's command mixins declare it; none is needed here

    def __init__(self, shards: Sequence[Redis]) -> None:
        self.shards = list(shards)

    def shard_for(self, key: Any) -> int:
        return shard_of(key if isinstance(key, str | bytes) else str(key), len(self.shards))

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        key = shard_key(args)
        if key is None:
            replies = await all_of(
                *(shard.execute_command(*args, **options) for shard in self.shards)  # type: ignore[no-untyped-call]
            )
            return replies[0]
        shard = self.shards[self.shard_for(key)]
        return await shard.execute_command(*args, **options)  # type: ignore[no-untyped-call]

    def pipeline(self, transaction: bool = True) -> ShardedPipeline:
        return ShardedPipeline(self, transaction)

    def register_script(self, script: ScriptTextT) -> AsyncScript:  # type: ignore[override]
        return AsyncScript(cast(Redis, self), script)

    def get_encoder(self) -> Any:
        return self.shards[0].get_encoder()  # type: ignore[no-untyped-call]

    async def aclose(self) -> None:
        await asyncio.gather(*(shard.aclose() for shard in self.shards))

    def __repr__(self) -> str:
        return f"<ShardedRedis shards={len(self.shards)}>"


class ShardedPipeline(AsyncCoreCommands):
    """Commands queued, then run per shard at once; replies in the order queued."""

    _event_dispatcher: Any = None

    def __init__(self, owner: ShardedRedis, transaction: bool) -> None:
        self._owner = owner
        self._transaction = transaction
        self._calls: list[tuple[int, Call]] = []

    def execute_command(self, *args: Any, **options: Any) -> ShardedPipeline:
        key = shard_key(args)
        shard = 0 if key is None else self._owner.shard_for(key)
        self._calls.append((shard, (args, options)))
        return self

    async def execute(self) -> list[Any]:
        groups: dict[int, list[int]] = {}
        for index, (shard, _) in enumerate(self._calls):
            groups.setdefault(shard, []).append(index)
        if self._transaction and len(groups) > 1:
            raise ValueError(f"a MULTI over {len(groups)} shards: keep its keys in one bucket")
        replies: list[Any] = [None] * len(self._calls)
        parts = await all_of(*(self._run(shard, at) for shard, at in groups.items()))
        for indexes, answers in zip(groups.values(), parts, strict=True):
            for index, answer in zip(indexes, answers, strict=True):
                replies[index] = answer
        self._calls = []
        return replies

    async def _run(self, shard: int, indexes: list[int]) -> list[Any]:
        async with self._owner.shards[shard].pipeline(transaction=self._transaction) as pipe:
            for index in indexes:
                args, options = self._calls[index][1]
                pipe.execute_command(*args, **options)
            answers: list[Any] = await pipe.execute()
            return answers

    async def __aenter__(self) -> ShardedPipeline:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._calls = []

    def __len__(self) -> int:
        return len(self._calls)


async def check_list(shards: Sequence[Redis], urls: Sequence[str], *, prefix: str) -> None:
    """Store ``urls``' fingerprint on every shard, or refuse (``ConfigError``) when a shard
    already holds another: this node was given another list, or the same in another order."""
    mine = fingerprint(urls)
    key = Keys(prefix).shard_list
    for index, shard in enumerate(shards):
        await shard.set(key, mine, nx=True)
        stored = await shard.get(key)
        theirs = stored.decode() if isinstance(stored, bytes) else str(stored)
        if theirs != mine:
            shown = redact_url(urls[index])
            raise ConfigError(
                "--redis",
                f"shard {index} ({shown}) belongs to a fleet given another list of shards "
                f"(fingerprint {theirs}, this node's {mine}): give every node the same --redis "
                f"list in the same order (or DEL {key} on every shard to start a new list)",
            )
