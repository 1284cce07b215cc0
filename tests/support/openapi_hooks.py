"""Schemathesis hooks for fuzzing a real node's admin API (loaded via SCHEMATHESIS_HOOKS).

- The node under test is never drained (``FUZZED_NODE`` names it): a drained node stops
  serving, and the rest of the run would test nothing.
- A registered upstream makes the node connect to it at once; generated hosts that the API
would accept are replaced by 127.0.0.1 before the request goes out, so the fuzzer never makes
the node reach beyond loopback (no DNS lookups, no other addresses). Hosts the API refuses are
sent unchanged: those are what the check is for.
"""

from __future__ import annotations

import ipaddress
import os
from typing import Any

import schemathesis

from paradoxplex.shared.upstreams import host_problem


def _reaches_beyond_loopback(host: str) -> bool:
    if host_problem(host.strip("[]")) is not None:
        return False  # refused by the API: never connected to
    try:
        return not ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return True  # a hostname: resolving it would leave the machine


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    operation = (case.method.upper(), case.path)
    node = os.environ["FUZZED_NODE"]
    if (
        operation == ("POST", "/v1/nodes/{id}/drain")
        and (case.path_parameters or {}).get("id") == node
    ):
        case.path_parameters["id"] = f"not-{node}"
    body = case.body
    if operation == ("POST", "/v1/upstreams") and isinstance(body, dict):
        host = body.get("host")
        if isinstance(host, str) and _reaches_beyond_loopback(host):
            body["host"] = "127.0.0.1"
