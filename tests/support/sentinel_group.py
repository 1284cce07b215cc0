"""A Sentinel-managed Redis for tests: 1 master, 1 replica, 3 sentinels on loopback, all from
the suite's redis-server binary (``RedisServer``), with the config ``paradoxplex cluster
--redis-mode sentinel`` writes (``cluster.sentinel_config``) but quick to fail over.

``start()`` returns once the replica is in sync and every sentinel sees the replica and the
two other sentinels (so a failover can be voted). ``url`` is the ``redis+sentinel://`` URL;
``master_port()`` asks a sentinel where the master is now; ``kill_master()`` SIGKILLs it.
Every wait polls against a deadline.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType

from redis import Redis

from paradoxplex.node.cli.devfleet.redis_servers import SENTINEL_SERVICE, sentinel_config
from tests.support.redis_server import RedisServer

READY_TIMEOUT = 20.0
#: A vote the sentinels split is tried again after 2 x failover-timeout: room for a few.
PROMOTION_TIMEOUT = 30.0
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 3000


class SentinelGroup:
    """``master``, ``replica`` and ``sentinels``; a context manager."""

    def __init__(
        self, *, service: str = SENTINEL_SERVICE, sentinel_args: tuple[str, ...] = ()
    ) -> None:
        self.service = service
        self.master = RedisServer(args=["--repl-diskless-sync", "yes"])
        self.replica: RedisServer | None = None
        self.sentinels: list[RedisServer] = []
        self.sentinel_args = sentinel_args

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.service}/0"

    def start(self) -> SentinelGroup:
        self.master.start()
        self.replica = RedisServer(args=["--replicaof", "127.0.0.1", str(self.master.port)])
        self.replica.start()
        config = sentinel_config(
            self.master.port,
            service=self.service,
            down_after_ms=DOWN_AFTER_MS,
            failover_timeout_ms=FAILOVER_TIMEOUT_MS,
        )
        for _ in range(3):
            sentinel = RedisServer(config=config, args=["--sentinel", *self.sentinel_args])
            self.sentinels.append(sentinel.start())
        self._wait(self._ready, "replica in sync, sentinels seeing each other")
        return self

    def sentinel(self, index: int = 0) -> Redis:
        """A client of sentinel ``index`` (close it)."""
        return Redis(port=self.sentinels[index].port, socket_timeout=2)

    def master_port(self) -> int:
        """The master's port, as the first sentinel that answers says."""
        for index in range(len(self.sentinels)):
            with self.sentinel(index) as sentinel:
                try:
                    found = sentinel.sentinel_get_master_addr_by_name(self.service)
                except OSError:
                    continue
                if found:
                    return int(found[1])
        raise RuntimeError("no sentinel names a master")

    def kill_master(self) -> int:
        """SIGKILL the master the sentinels name; its port."""
        port = self.master_port()
        for server in (self.master, self.replica):
            if server is not None and server.port == port:
                server.kill()
        return port

    def wait_promotion(self, old_port: int, *, timeout: float = PROMOTION_TIMEOUT) -> float:
        """Wait until every sentinel names another master than ``old_port``; the time then.
        When none does in time, the error carries the sentinels' logs (their events)."""
        try:
            self._wait(lambda: self._all_name_other(old_port), "new master", timeout=timeout)
        except RuntimeError as error:
            logs = "\n".join(f"sentinel {s.port}:\n{s.log_tail(2000)}" for s in self.sentinels)
            raise RuntimeError(f"{error}\n{logs}") from None
        return time.monotonic()

    def close(self) -> None:
        for server in [*self.sentinels, self.replica, self.master]:
            if server is not None:
                server.close()

    def __enter__(self) -> SentinelGroup:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- waits -----------------------------------------------------------------------------

    def _wait(
        self, ready: Callable[[], bool], what: str, *, timeout: float = READY_TIMEOUT
    ) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if time.monotonic() > deadline:
                raise RuntimeError(f"sentinel group: no {what} within {timeout:g} s")
            time.sleep(0.05)  # a poll interval, bounded by the deadline

    def _ready(self) -> bool:
        assert self.replica is not None
        with Redis(port=self.replica.port) as replica:
            if replica.info("replication").get("master_link_status") != "up":
                return False
        for index in range(len(self.sentinels)):
            with self.sentinel(index) as sentinel:
                state = sentinel.sentinel_master(self.service)
                if int(state["num-slaves"]) < 1 or int(state["num-other-sentinels"]) < 2:
                    return False
        return True

    def _all_name_other(self, old_port: int) -> bool:
        for index in range(len(self.sentinels)):
            with self.sentinel(index) as sentinel:
                found = sentinel.sentinel_get_master_addr_by_name(self.service)
                if not found or int(found[1]) == old_port:
                    return False
        return True
