"""Log lines stay one line: ``one_line`` and ``OneLineFormatter``."""

from __future__ import annotations

import logging
import sys

import pytest

from paradoxplex.shared.logs import OneLineFormatter, one_line


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("127.0.0.1:45888", "127.0.0.1:45888"),
        ("a b", "a b"),
        ("127.0.0.1\n", "127.0.0.1\\n"),
        ("\x00", "\\x00"),
        ("up\r\nINFO forged", "up\\r\\nINFO forged"),
        ("a\u2028b\u2029c\x85d", "a\\u2028b\\u2029c\\x85d"),
        ("tab\there", "tab\\there"),
        ("\x1b[31mred", "\\x1b[31mred"),
        ("lone \ud800 surrogate", "lone \\ud800 surrogate"),
        ("été", "été"),
    ],
)
def test_one_line_escapes_what_could_split_or_hide_a_line(text: str, shown: str) -> None:
    assert one_line(text) == shown
    assert len(one_line(text).splitlines()) <= 1


def test_one_line_is_bounded() -> None:
    assert one_line("x" * 10_000, limit=8) == "x" * 8 + "…"
    assert one_line("\n" * 10, limit=3) == "\\n\\n\\n…"


def record(message: str, *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            exc_info = sys.exc_info()
    return logging.LogRecord("paradoxplex.x", logging.INFO, __file__, 1, message, args, exc_info)


def test_the_formatter_keeps_every_message_on_one_line() -> None:
    formatter = OneLineFormatter("%(levelname)s %(name)s: %(message)s")
    line = formatter.format(record("upstream %s added", "up\nERROR forged line"))
    assert line == "INFO paradoxplex.x: upstream up\\nERROR forged line added"


def test_the_formatter_leaves_a_traceback_after_the_one_line_message() -> None:
    formatter = OneLineFormatter("%(message)s")
    lines = formatter.format(record("failed for %s", "a\nb", exc=True)).splitlines()
    assert lines[0] == "failed for a\\nb"
    assert lines[1].startswith("Traceback")
    assert lines[-1] == "ValueError: boom"
