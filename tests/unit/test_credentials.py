"""Redis credentials: one redaction for every URL shown, passwords put in and read from files."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis.asyncio.connection import parse_url

from paradoxplex.shared.config import PARSERS
from paradoxplex.shared.credentials import read_password, redact_url, url_user, with_password
from paradoxplex.shared.errors import ConfigError

REDACTED = [
    ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ("redis://:pw@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
    ("redis://user:pw@r:6379/2", "redis://user:***@r:6379/2"),
    ("redis://user@r:6379", "redis://user@r:6379"),
    ("rediss://u:p%40ss@r:6380/0?ssl_ca_certs=/ca.pem", "rediss://u:***@r:6380/0?ssl_ca_certs=/ca.pem"),
    ("redis://u:p@s/s@r:6379/0", "redis://u:***@r:6379/0"),  # unencoded @ and / in a password
    ("unix://u:pw@/run/redis.sock?db=1", "unix://u:***@/run/redis.sock?db=1"),
    ("redis://r:6379/0?password=pw&db=1", "redis://r:6379/0?password=***&db=1"),
    ("http://:pw@r:1/0", "http://:***@r:1/0"),
    ("redis+sentinel://:pw@s1:26379,s2:26379/svc/0", "redis+sentinel://:***@s1:26379,s2:26379/svc/0"),
    ("redis+sentinel://s1,s2/svc?sentinel_password=x&a=1", "redis+sentinel://s1,s2/svc?sentinel_password=***&a=1"),
    ("rediss+sentinel://u:p@s1/svc?Sentinel_Password=x", "rediss+sentinel://u:***@s1/svc?Sentinel_Password=***"),
    ("not a url", "not a url"),
    ("", ""),
]  # fmt: skip


@pytest.mark.parametrize(("url", "shown"), REDACTED)
def test_a_password_is_never_shown(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@pytest.mark.parametrize(("url", "shown"), REDACTED)
def test_redacting_twice_changes_nothing(url: str, shown: str) -> None:
    assert redact_url(shown) == shown


@pytest.mark.parametrize(
    ("url", "user"),
    [("redis://r:1", "default"), ("redis://:pw@r:1", "default"), ("redis://u%3Ax:pw@r:1", "u:x")],
)
def test_the_user_a_url_logs_in_as(url: str, user: str) -> None:
    assert url_user(url) == user


@pytest.mark.parametrize(
    ("url", "username"),
    [
        ("redis://r:6379/0", None),
        ("redis://:old@r:6379/0", None),
        ("redis://u:old@r:6379/0", "u"),
        ("redis://u@r:6379/0?db=2", "u"),
    ],
)
def test_a_password_replaces_the_urls_own(url: str, username: str | None) -> None:
    """What redis-py reads from the result: the new password (odd characters and all)."""
    password = "n:w@/p?&#%"
    options = parse_url(with_password(url, password))
    assert options["password"] == password
    assert options.get("username") == username
    assert (options["host"], options["port"]) == ("r", 6379)


def test_a_unix_socket_url_takes_a_password() -> None:
    options = parse_url(with_password("unix:///run/redis.sock?db=1", "pw"))
    assert (options["path"], options["password"], options["db"]) == ("/run/redis.sock", "pw", 1)


def test_a_password_file_gives_its_first_line(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    path.write_text("s3cret \r\nsecond line\n")
    assert read_password("redis_password_file", str(path)) == "s3cret "


@pytest.mark.parametrize(
    ("content", "reason"),
    [("", "holds no password"), ("\nlater\n", "holds no password"), (b"\xff\xfe", "not UTF-8")],
)
def test_a_bad_password_file_is_a_config_error(
    tmp_path: Path, content: str | bytes, reason: str
) -> None:
    path = tmp_path / "pw"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ConfigError) as caught:
        read_password("redis_password_file", str(path))
    assert caught.value.key == "redis_password_file"
    assert reason in caught.value.reason


def test_an_unreadable_password_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        read_password("redis_password_file", str(tmp_path / "absent"))
    assert caught.value.reason == f"cannot read {tmp_path / 'absent'}: No such file or directory"


def test_a_bad_redis_setting_hides_its_password() -> None:
    with pytest.raises(ConfigError) as caught:
        PARSERS["redis"]("--redis", "http://u:hunter2@r:1/0")
    assert "hunter2" not in str(caught.value)
    assert "'http://u:***@r:1/0'" in str(caught.value)
