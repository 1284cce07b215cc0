"""Why a message was not delivered: every reason in one enum, so that a label cannot be
misspelled into a new metric series.

Rules:
- Every message a node gives up on is counted in ``paradoxplex_drops_total{reason}`` under a
  ``DropReason``; its value is the metric label. No drop is counted under a bare string.
- A node creates every reason's series when it starts: a scrape shows each one, at 0 until it
  happens (a dashboard or an alert needs no ``absent()``).
- The README's table of drop reasons lists exactly these, in this order
  (``tests/unit/test_drops.py`` fails otherwise).
"""

from __future__ import annotations

import enum


class DropReason(enum.StrEnum):
    """Why a message was dropped; the value is the metric label."""

    # a reply for one of this node's sockets
    WRITE_BUFFER_FULL = "write_buffer_full"
    NODE_BUFFER_FULL = "node_buffer_full"
    SOCKET_CLOSED = "socket_closed"
    UNKNOWN_SOCKET = "unknown_socket"
    # what a socket sent, on its way to an upstream
    HOLD_TIMEOUT = "hold_timeout"
    MESSAGE_TOO_LARGE = "message_too_large"
    LIFECYCLE_EVENT_NO_UPSTREAM = "lifecycle_event_no_upstream"
    REDELIVERY_EXHAUSTED = "redelivery_exhausted"
    RETRY_BUDGET = "retry_budget"
    # between nodes
    BUS_HOLD_FULL = "bus_hold_full"
    BUS_HOLD_EXPIRED = "bus_hold_expired"
    OWNER_UNREACHABLE = "owner_unreachable"
    FLEET_UNAVAILABLE = "fleet_unavailable"
    COMMAND_EXPIRED = "command_expired"
    # a hot handoff
    HANDOFF_LATE = "handoff_late"
