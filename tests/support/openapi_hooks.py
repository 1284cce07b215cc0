"""Schemathesis hooks for fuzzing a real node's admin API (loaded via SCHEMATHESIS_HOOKS).

- The node under test is never drained (``FUZZED_NODE`` names it): a drained node stops
  serving, and the rest of the run would test nothing.
- A registered upstream makes the node connect to it at once; generated hosts that the API
would accept are replaced by 127.0.0.1 before the request goes out, so the fuzzer never makes
the node reach beyond loopback (no DNS lookups, no other addresses). Hosts the API refuses are
sent unchanged: those are what the check is for.
- A valid ``Idempotency-Key`` is made unique per call (a counter replaces its end, so it stays
  valid): the generator repeats its favourite values ("0"), and a key seen before with another
  request is rightly a 422, which the check would take for a valid request refused. Keys the
  document refuses are sent unchanged. Replays and 422s are tested by the suite itself.
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import re
from typing import Any

import schemathesis

from paradoxplex.shared.idempotency import HEADER, KEY_PATTERN, MAX_KEY_LENGTH
from paradoxplex.shared.upstreams import host_problem

_CALLS = itertools.count()


def _unique(key: str) -> str:
    """A valid key made unique: its end replaced by a call number."""
    suffix = f"#{next(_CALLS)}"
    return key[: MAX_KEY_LENGTH - len(suffix)] + suffix


def _reaches_beyond_loopback(host: str) -> bool:
    if host_problem(host.strip("[]")) is not None:
        return False  # refused by the API: never connected to
    try:
        return not ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return True  # a hostname: resolving it would leave the machine


def _negative(case: Any) -> bool:
    """A case meant to be refused: left alone (a changed case is checked again, and a negative
    one could pass for a valid one; it is refused before its key is read anyway)."""
    meta = case.meta
    return meta is not None and bool(meta.generation.mode.is_negative)


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    operation = (case.method.upper(), case.path)
    node = os.environ["FUZZED_NODE"]
    if (
        operation == ("POST", "/v1/nodes/{id}/drain")
        and (case.path_parameters or {}).get("id") == node
    ):
        case.path_parameters["id"] = f"not-{node}"
    key = (case.headers or {}).get(HEADER)
    if isinstance(key, str) and re.fullmatch(KEY_PATTERN, key) and not _negative(case):
        case.headers[HEADER] = _unique(key)
    body = case.body
    if operation == ("POST", "/v1/upstreams") and isinstance(body, dict):
        host = body.get("host")
        if isinstance(host, str) and _reaches_beyond_loopback(host):
            body["host"] = "127.0.0.1"
