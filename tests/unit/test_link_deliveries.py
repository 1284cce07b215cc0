"""One link's delivery bookkeeping (no I/O): the last-delivery slot, and the possibly lost
messages of an upstream without acknowledgements."""

from __future__ import annotations

from paradoxplex.node.links.deliveries import LinkDeliveries
from paradoxplex.node.links.queue import Outgoing
from paradoxplex.node.metrics import Metrics
from paradoxplex.shared.redelivery import Answers
from paradoxplex.shared.unacked import UnackedLimits, UnackedTotals
from paradoxplex.wire import upstream_pb2 as pb


def deliveries(metrics: Metrics, freed: list[int]) -> LinkDeliveries:
    return LinkDeliveries(
        "u1",
        limits=UnackedLimits(),
        totals=UnackedTotals(),
        answers=Answers(),
        metrics=metrics,
        on_free=lambda: freed.append(1),
    )


def holding(link: LinkDeliveries) -> Outgoing | None:
    """The link's last-delivery message (a call: each check reads it afresh)."""
    return link.final


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    assert value is not None, name
    return value


def test_the_last_delivery_slot_frees_once_that_message_is_acknowledged() -> None:
    freed: list[int] = []
    link = deliveries(Metrics(), freed)
    link.opened("origin")
    last = Outgoing("a", b"p", None, 2, attempt=3)
    link.take_final(last)
    link.sent([Outgoing("a", b"p", None, 1), last])
    link.ack("a", 1)
    assert holding(link) is last
    assert freed == []
    link.ack("a", 2)
    assert holding(link) is None
    assert freed == [1]


def test_the_slot_is_not_freed_before_its_message_was_even_sent() -> None:
    freed: list[int] = []
    link = deliveries(Metrics(), freed)
    link.opened("origin")
    last = Outgoing("a", b"p", None, 5, attempt=3)
    link.take_final(last)  # placed, still queued
    link.sent([Outgoing("a", b"p", None, 4)])
    link.ack("a", 4)
    assert holding(link) is last
    assert link.take_back() == []
    assert holding(link) is None  # the link is gone: the slot with it


def test_without_acknowledgements_what_no_reply_followed_counts_as_possibly_lost() -> None:
    metrics = Metrics()
    link = deliveries(metrics, [])
    link.opened("")
    link.sent([Outgoing("a", b"1"), Outgoing("a", b"2"), Outgoing("b", b"1")])
    link.replied("a")
    link.sent([Outgoing("c", b"", pb.SocketEvent())])  # an event: not counted
    assert link.take_back() == []
    assert sample(metrics, "paradoxplex_at_most_once_total", reason="no_acks") == 1
