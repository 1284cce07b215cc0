"""Redis credentials: shown nowhere, read from where ``ps`` cannot see them.

Rules:
- ``redact_url`` is the one way a Redis URL is shown (errors, logs, the cluster's banner): the
  password becomes ``***`` (``redis://user:***@host:port/db``), so does the value of any query
  option whose name ends in ``password`` (``password=``, a Sentinel URL's
  ``sentinel_password=``). The user name stays (messages name it). Text that is no URL comes
  back unchanged unless it has ``user:password@`` in it. A list of URLs (shards) is redacted
  URL by URL.
- ``with_password(url, password)`` puts a password into a URL (percent-encoded), replacing
  the URL's own; the result is handed to the Redis client and never shown.
- ``read_password(key, path)``: a password file holds the password on its first line; an
  unreadable or empty file is ``ConfigError(key, ...)``.
- ``url_user(url)``: the user a URL logs in as (``default`` when it names none).
"""

from __future__ import annotations

from urllib.parse import quote, unquote

from paradoxplex.shared.errors import ConfigError
from paradoxplex.shared.placement import split_urls

__all__ = ["MASK", "read_password", "redact_url", "url_user", "with_password"]

MASK = "***"
#: Longest password file read (a password is a line, not a document).
MAX_PASSWORD_FILE = 4096


def _split(url: str) -> tuple[str, str | None, str, str]:
    """``scheme://``, userinfo (None when absent), the rest up to ``?``, the query."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    else:
        scheme += sep
    head, qmark, query = rest.partition("?")
    userinfo: str | None = None
    if "@" in head:  # the last @: an unencoded @ or / in a password stays inside the userinfo
        userinfo, _, head = head.rpartition("@")
    return scheme, userinfo, head, qmark + query


def _redact_query(query: str) -> str:
    """``?a=1&password=x&sentinel_password=y`` → ``?a=1&password=***&sentinel_password=***``."""
    pairs = query[1:].split("&") if query else []
    for index, pair in enumerate(pairs):
        name = pair.partition("=")[0]
        if name.lower().endswith("password"):
            pairs[index] = f"{name}={MASK}"
    return "?" + "&".join(pairs) if query else ""


def redact_url(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***`` (each URL of a list)."""
    urls = split_urls(url)
    if len(urls) > 1:
        return ",".join(redact_url(one) for one in urls)
    scheme, userinfo, head, query = _split(url)
    if userinfo is not None:
        user, colon, _ = userinfo.partition(":")
        head = f"{user}:{MASK}@{head}" if colon else f"{user}@{head}"
    return scheme + head + _redact_query(query)


def url_user(url: str) -> str:
    """The user ``url`` logs in as: its user name, else ``default`` (as Redis calls it)."""
    userinfo = _split(url)[1]
    user = unquote(userinfo.partition(":")[0]) if userinfo else ""
    return user or "default"


def with_password(url: str, password: str) -> str:
    """``url`` logging in with ``password`` (the URL's own password, if any, replaced; each
    URL of a list: the shards of a fleet share one password file)."""
    urls = split_urls(url)
    if len(urls) > 1:
        return ",".join(with_password(one, password) for one in urls)
    scheme, userinfo, head, query = _split(url)
    user = userinfo.partition(":")[0] if userinfo else ""
    return f"{scheme}{user}:{quote(password, safe='')}@{head}{query}"


def read_password(key: str, path: str) -> str:
    """The first line of ``path``, without its line end."""
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read(MAX_PASSWORD_FILE)
    except OSError as error:
        raise ConfigError(key, f"cannot read {path}: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise ConfigError(key, f"{path} is not UTF-8 text") from None
    password = text.split("\n", 1)[0].rstrip("\r")
    if not password:
        raise ConfigError(key, f"{path} holds no password (its first line is empty)")
    return password
