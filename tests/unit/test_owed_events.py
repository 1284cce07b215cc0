"""Owed lifecycle events: placed in order as links take them, bounded, the oldest dropped
(counted) past the bound."""

from __future__ import annotations

from typing import cast

from paradoxplex.node.links.link import UpstreamLink
from paradoxplex.node.links.owed import OwedEvents
from paradoxplex.node.links.queue import Outgoing
from paradoxplex.node.metrics import Metrics
from paradoxplex.shared.balancing import Balancer
from paradoxplex.wire import upstream_pb2 as pb

DISCONNECTED = pb.SocketEvent(kind=pb.SocketEvent.Kind.DISCONNECTED)


class RecordedLink:
    """What ``OwedEvents`` calls on a link, recorded; room for ``room`` items."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.enqueued: list[Outgoing] = []

    def enqueue(self, item: Outgoing) -> None:
        self.enqueued.append(item)


def owed_events(link: RecordedLink, metrics: Metrics, *, limit: int = 10) -> OwedEvents:
    balancer = Balancer()
    balancer.set_members(["up"])
    return OwedEvents(
        balancer=balancer,
        links={"up": cast(UpstreamLink, link)},
        has_room=lambda upstream_id: len(link.enqueued) < link.room,
        metrics=metrics,
        limit=limit,
    )


def dropped(metrics: Metrics) -> float:
    value = metrics.registry.get_sample_value(
        "paradoxplex_drops_total", {"reason": "lifecycle_event_no_upstream"}
    )
    return value or 0.0


def test_events_wait_in_order_until_links_take_them() -> None:
    link, metrics = RecordedLink(room=1), Metrics()
    owed = owed_events(link, metrics)
    owed.owe([("a", DISCONNECTED), ("b", DISCONNECTED), ("c", DISCONNECTED)])
    assert [item.client_uuid for item in link.enqueued] == ["a"]
    assert len(owed) == 2
    link.room = 3
    owed.place()
    assert [item.client_uuid for item in link.enqueued] == ["a", "b", "c"]
    assert not owed
    assert all(item.seq == 0 and item.event == DISCONNECTED for item in link.enqueued)
    assert dropped(metrics) == 0.0


def test_past_the_bound_the_oldest_are_dropped_and_counted() -> None:
    link, metrics = RecordedLink(room=0), Metrics()
    owed = owed_events(link, metrics, limit=2)
    owed.owe([("a", DISCONNECTED), ("b", DISCONNECTED), ("c", DISCONNECTED)])
    assert len(owed) == 2
    assert dropped(metrics) == 1.0
    link.room = 10
    owed.place()
    assert [item.client_uuid for item in link.enqueued] == ["b", "c"]
