"""Log lines stay one line, whatever a client, an upstream or a peer node sent.

Rules:
- ``one_line(text)`` escapes every character that could end or hide a log line (control
  characters such as ``\\n``, ``\\r`` and NUL, the Unicode line and paragraph separators, and
  other non-printable characters) as its Python escape (``\\n``, ``\\x00``, ``\\u2028``), and
  cuts the text at ``limit`` characters.
- ``OneLineFormatter`` applies it to every formatted message, so no argument of any log call
  can split a line; an exception's traceback, appended after the message, keeps its lines.
- Code that logs a string from outside (a URL path, a header, an id) also passes it through
  ``one_line``, so that an application with its own logging setup gets the same guarantee.
"""

from __future__ import annotations

import logging

DEFAULT_LIMIT = 512


def one_line(text: str, limit: int = DEFAULT_LIMIT) -> str:
    """``text`` with its non-printable characters escaped, at most ``limit`` characters
    (``…`` marks a cut)."""
    if len(text) > limit:
        return one_line(text[:limit], limit) + "…"
    if text.isprintable():
        return text
    return "".join(
        char if char.isprintable() else char.encode("unicode_escape").decode("ascii")
        for char in text
    )


class OneLineFormatter(logging.Formatter):
    """A ``logging.Formatter`` whose message part is always one line (see ``one_line``)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return one_line(super().formatMessage(record), limit=64 * 1024)
