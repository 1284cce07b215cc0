"""The node's upstreams and the pool that links them, as the node's config sets them.

Rules:
- Read once, when the node is built: ``--upstream`` gives the upstreams this node links at
  start (``upstream_specs``), each with the node's ``ready_timeout``, ``alive_timeout`` and
  ``--upstream-tls``; upstreams the fleet or the admin API add later bring their own.
- The pool gets its settings as keyword arguments (``upstream_pool``): routing, the queue per
  link, streams, batch, the unacknowledged limits per link and per node, the redelivery
  budget, the hold timeout, and the channels' credentials (``tls.upstream_credentials``).
  Nothing below the pool sees the config.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping

from paradoxplex.node.links.link import UpstreamLink
from paradoxplex.node.links.pool import UpstreamPool
from paradoxplex.node.metrics import Metrics
from paradoxplex.node.sockets.session import Session
from paradoxplex.node.tls import upstream_credentials
from paradoxplex.shared.config import NodeConfig
from paradoxplex.shared.unacked import UnackedLimits, UnackedTotals
from paradoxplex.shared.upstreams import UpstreamSpec
from paradoxplex.wire import upstream_pb2


def upstream_pool(
    config: NodeConfig,
    *,
    metrics: Metrics,
    sessions: Mapping[str, Session],
    receive_reply: Callable[[upstream_pb2.OutputStreamRequest], Awaitable[None] | None],
    on_change: Callable[[UpstreamLink], None],
) -> UpstreamPool:
    """The upstream links, with the node's routing, queue, batch and unacknowledged limits."""
    return UpstreamPool(
        metrics=metrics,
        sessions=sessions,
        receive_reply=receive_reply,
        on_change=on_change,
        credentials=upstream_credentials(config),
        routing=config.routing,
        queue_limit=config.upstream_queue,
        streams=config.streams,
        batch=config.batch == "auto",
        node_id=config.node_id,
        max_deliveries=config.max_deliveries,
        unacked=UnackedLimits(config.max_unacked, config.max_unacked_bytes),
        totals=UnackedTotals(
            max_messages=config.max_unacked_node, max_bytes=config.max_unacked_node_bytes
        ),
        retry_budget=config.retry_budget,
        hold_timeout=config.hold_timeout,
    )


def upstream_specs(config: NodeConfig) -> Iterable[UpstreamSpec]:
    """The upstreams named by ``--upstream``, with the node's timeouts and TLS."""
    return (
        UpstreamSpec(
            address.host,
            address.port,
            config.ready_timeout,
            config.alive_timeout,
            tls=config.upstream_tls,
        )
        for address in config.upstream
    )
