"""A Sentinel URL, read into its parts (no I/O).

The form, in full::

    redis+sentinel://[[user]:password@]host1[:port],host2[:port],.../service_name[/db][?options]
    rediss+sentinel://...   the same, with TLS to the sentinels and to the master

Rules:
- The hosts are the sentinels (at least one; port 26379 when absent; ``[v6]:port`` for IPv6).
  ``service_name`` is the name the sentinels monitor the master under (``sentinel monitor
  NAME ...``); ``db`` the database number (default 0).
- The user and password in front of the hosts are the Redis master's (and replicas'), as in
  a ``redis://`` URL; ``--redis-password-file`` replaces that password as for any URL.
- Sentinels that need a login of their own get it as ``sentinel_username=`` and
  ``sentinel_password=`` query options (percent-encoded); without them they are asked with
  none. Both are redacted wherever the URL is shown.
- Other query options (``socket_timeout``, ``ssl_ca_certs``, ``ssl_certfile``, ...) are the
  ones a ``redis://`` URL takes; with ``rediss+sentinel`` the TLS options apply to the
  sentinels and to the master alike.
- A malformed URL is ``ConfigError(key, reason)``; the reason never shows a password.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote

from paradoxplex.shared.credentials import redact_url
from paradoxplex.shared.errors import ConfigError

__all__ = ["DEFAULT_PORT", "SCHEMES", "SentinelUrl", "is_sentinel_url", "parse_sentinel_url"]

#: URL schemes of a Sentinel-managed Redis: plain, and TLS.
SCHEMES = ("redis+sentinel", "rediss+sentinel")
DEFAULT_PORT = 26379
#: Query options meant for the sentinels rather than the master.
SENTINEL_OPTIONS = ("sentinel_username", "sentinel_password")


@dataclass(frozen=True, slots=True)
class SentinelUrl:
    """The parts of a Sentinel URL; its ``repr`` shows no password."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)
    #: The other query options, as given (redis-py's URL options for the master).
    options: tuple[tuple[str, str], ...] = ()

    @property
    def addresses(self) -> str:
        """``host1:26379,host2:26379``: the sentinels, as a message names them."""
        return ",".join(_address(host, port) for host, port in self.sentinels)


def is_sentinel_url(url: str) -> bool:
    return url.partition("://")[0].lower() in SCHEMES


def parse_sentinel_url(url: str, *, key: str = "--redis") -> SentinelUrl:
    """The parts of ``url``; ``ConfigError(key, ...)`` when it is not a Sentinel URL."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in SCHEMES:
        raise ConfigError(key, f"expected a redis+sentinel:// URL, got {redact_url(url)!r}")
    rest, _, query = rest.partition("?")
    userinfo, at, rest = rest.rpartition("@")
    hosts, slash, path = rest.partition("/")
    service, _, db_text = path.partition("/")
    if not slash or not service:
        raise ConfigError(key, _form("the service name after the hosts is missing", url))
    username, _, password = userinfo.partition(":") if at else ("", "", "")
    options = parse_qsl(query, keep_blank_values=True)
    own = {name: value for name, value in options if name in SENTINEL_OPTIONS}
    return SentinelUrl(
        sentinels=_sentinels(key, hosts, url),
        service=unquote(service),
        db=_db(key, db_text.strip("/"), url),
        tls=scheme.lower() == "rediss+sentinel",
        username=unquote(username) or None,
        password=unquote(password) or None,
        sentinel_username=own.get("sentinel_username") or None,
        sentinel_password=own.get("sentinel_password") or None,
        options=tuple((name, value) for name, value in options if name not in SENTINEL_OPTIONS),
    )


def _form(problem: str, url: str) -> str:
    return (
        f"{problem} in {redact_url(url)!r} "
        "(expected redis+sentinel://[:password@]host:port[,host:port...]/service_name[/db])"
    )


def _sentinels(key: str, hosts: str, url: str) -> tuple[tuple[str, int], ...]:
    found = []
    for item in hosts.split(","):
        text = item.strip()
        if not text:
            raise ConfigError(key, _form("a sentinel host is empty", url))
        found.append(_host_port(key, text, url))
    return tuple(found)


def _host_port(key: str, text: str, url: str) -> tuple[str, int]:
    if text.startswith("["):  # [v6] or [v6]:port
        host, _, tail = text[1:].partition("]")
        port = tail.removeprefix(":") if tail.startswith(":") else ""
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:
        host, port = text, ""
    if not host:
        raise ConfigError(key, _form(f"sentinel {text!r} has no host", url))
    if not port:
        return host, DEFAULT_PORT
    if not port.isdigit() or not 0 < int(port) <= 65535:
        raise ConfigError(key, _form(f"sentinel {text!r} needs a port in 1-65535", url))
    return host, int(port)


def _db(key: str, text: str, url: str) -> int:
    if not text:
        return 0
    if not text.isdigit():
        raise ConfigError(key, _form(f"the database {text!r} is no number", url))
    return int(text)


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
