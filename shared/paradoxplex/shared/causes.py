"""Foreign error texts in a few words: what gRPC's details or redis-py's messages mean.

Rules:
- A known cause is one short phrase ("connection refused", "host name not found", ...);
  the first entry of ``CAUSES`` whose foreign text appears (lower case) wins.
- Nothing here reads payload bytes or raises.
"""

from __future__ import annotations

# (what a foreign message says, what we say), first match wins; compared in lower case.
CAUSES = (
    ("connection refused", "connection refused"),
    ("connect call failed", "connection refused"),
    ("lookup", "host name not found"),
    ("resolv", "host name not found"),
    ("name or service not known", "host name not found"),
    ("no address associated", "host name not found"),
    ("connection reset", "connection reset"),
    ("no route to host", "no route to host"),
    ("network is unreachable", "network unreachable"),
    ("timed out", "connect timed out"),
    ("timeout", "connect timed out"),
    ("ssl", "TLS handshake failed"),
    ("authentication", "authentication failed"),
    ("noauth", "authentication required"),
    ("wrongpass", "wrong password"),
)


def cause_of(text: str) -> str | None:
    """The known cause a foreign error text names, or None."""
    lowered = text.lower()
    return next((ours for theirs, ours in CAUSES if theirs in lowered), None)


def grpc_cause(code: str, details: str, *, timeout: float) -> str:
    """Why a gRPC call failed, in words: ``code`` is the status name, ``details`` its text."""
    if code == "DEADLINE_EXCEEDED":
        return f"no answer within {timeout:g}s"
    if code == "UNIMPLEMENTED":
        return "not an upstream (the ready RPC is unimplemented)"
    return cause_of(details) or f"{code.lower()}: {details}"
