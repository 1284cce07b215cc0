"""Where log lines go and how they look: ``--log-level`` and ``--log-format``.

Rules:
- One handler on the root logger, writing to stderr; stdout carries only the start line.
- ``text``: ``<time> <LEVEL> <logger>: <message>``, one line whatever the logged strings hold
  (``OneLineFormatter``). ``json``: one object per line with
  ``time`` (UTC ISO 8601), ``level``, ``logger``, ``node_id``, ``message`` and, for an
  exception, ``exc_info``.
- ``--log-level`` applies to the ``paradoxplex`` loggers; other libraries (gRPC, asyncio,
  aiohttp) log at INFO and above only, so their debug chatter stays out. gRPC's C core is
  silent unless ``GRPC_VERBOSITY`` asks for it (``grpc_env.py``).
"""

from __future__ import annotations

import datetime
import logging
import sys

import orjson

from paradoxplex.shared.config import DEFAULT_LOG_FORMAT, DEFAULT_LOG_LEVEL
from paradoxplex.shared.logs import OneLineFormatter

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, carrying the node id."""

    def __init__(self, node_id: str) -> None:
        super().__init__()
        self.node_id = node_id

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.datetime.fromtimestamp(record.created, tz=datetime.UTC)
        data = {
            "time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "node_id": self.node_id,
            "message": record.getMessage(),
        }
        if record.exc_info:
            data["exc_info"] = self.formatException(record.exc_info)
        return orjson.dumps(data).decode()


def setup_logging(
    level: str = DEFAULT_LOG_LEVEL, fmt: str = DEFAULT_LOG_FORMAT, *, node_id: str = ""
) -> None:
    """Configure the root handler for ``level`` (a name) and ``fmt`` (``text`` or ``json``)."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(node_id))
    else:
        handler.setFormatter(OneLineFormatter(TEXT_FORMAT))
    number = getattr(logging, level.upper())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(max(number, logging.INFO))
    logging.getLogger("paradoxplex").setLevel(number)
