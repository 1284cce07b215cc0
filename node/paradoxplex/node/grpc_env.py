"""gRPC's process-wide settings, put in the environment before gRPC is first imported.

Rules:
- Only defaults: a variable the operator set (even to an empty string) is left alone.
- ``GRPC_VERBOSITY=NONE``: gRPC's C core stays silent (its own lines, such as
  ``E… add_port.cc``) unless asked.
- ``GRPC_EXPERIMENTS=-event_engine_client,-event_engine_listener``: gRPC's sockets are polled
  by the thread that already waits on the completion queue (the poller asyncio's gRPC runs)
  instead of a separate EventEngine thread pool. That saves a thread hand-off on every
  message each way: measured on the 2-core bench machine, a one-message gRPC round trip
  went from about 310 to 210 µs, the node's p50 at one connection from about 490 to 400 µs,
  and the original-proto path gained 15-30 % msgs/s (bench/README.md). Set
  ``GRPC_EXPERIMENTS=`` (empty) to run gRPC's own defaults.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

DEFAULTS = {
    "GRPC_VERBOSITY": "NONE",
    "GRPC_EXPERIMENTS": "-event_engine_client,-event_engine_listener",
}


def apply_grpc_defaults(env: MutableMapping[str, str] | None = None) -> None:
    """Put ``DEFAULTS`` into ``env`` (the process environment) where not set already."""
    target = os.environ if env is None else env
    for name, value in DEFAULTS.items():
        target.setdefault(name, value)
