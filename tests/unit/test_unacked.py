"""What a link keeps until its upstream acknowledges it: cumulative acks per socket in the order
sent, bounds per link and per node (at-most-once past them, the place kept), taking back."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from paradoxplex.shared.unacked import AtMostOnce, Unacked, UnackedLimits, UnackedTotals


@dataclass
class Item:
    client_uuid: str
    seq: int
    payload: bytes = b"x"


def link(
    messages: int = 100, size: int = 1000, totals: UnackedTotals | None = None
) -> Unacked[Item]:
    return Unacked(
        limits=UnackedLimits(messages, size),
        totals=totals if totals is not None else UnackedTotals(),
    )


def test_an_ack_finishes_that_sockets_messages_up_to_it_and_no_others() -> None:
    unacked = link()
    for seq in (1, 2, 3):
        assert unacked.sent(Item("a", seq)) is None
    unacked.sent(Item("b", 1))
    assert unacked.ack("a", 2) == 2
    assert unacked.holds("a", 3)
    assert not unacked.holds("a", 2)
    assert unacked.holds("b")
    assert len(unacked) == 2


def test_cumulative_means_in_the_order_sent_not_by_number() -> None:
    """Messages sent again (lower numbers) after newer ones: an ack of a newer one finishes
    only what was sent before it."""
    unacked = link()
    for seq in (2, 4, 1, 3):  # 1 and 3 came back from another link later
        unacked.sent(Item("a", seq))
    assert unacked.ack("a", 4) == 2
    assert unacked.holds("a", 1)
    assert unacked.holds("a", 3)
    assert unacked.ack("a", 3) == 2
    assert not unacked


def test_an_ack_for_a_number_not_held_changes_nothing() -> None:
    unacked = link()
    unacked.sent(Item("a", 5))
    assert unacked.ack("a", 9) == 0
    assert unacked.ack("zz", 1) == 0
    assert len(unacked) == 1


@pytest.mark.parametrize(
    ("messages", "size", "node_messages", "node_size", "bound"),
    [
        (2, 1000, 100, 1000, AtMostOnce.LINK_BOUND),
        (100, 2, 100, 1000, AtMostOnce.LINK_BOUND),
        (100, 1000, 2, 1000, AtMostOnce.NODE_BOUND),
        (100, 1000, 100, 2, AtMostOnce.NODE_BOUND),
    ],
)
def test_past_a_bound_a_message_is_sent_unkept_and_says_which(
    messages: int, size: int, node_messages: int, node_size: int, bound: AtMostOnce
) -> None:
    totals = UnackedTotals(max_messages=node_messages, max_bytes=node_size)
    unacked = link(messages, size, totals)
    assert unacked.sent(Item("a", 1)) is None
    assert unacked.sent(Item("a", 2)) is None
    assert unacked.sent(Item("a", 3)) is bound
    assert len(unacked) == 2
    assert (totals.messages, totals.bytes) == (2, 2)


def test_an_unkept_message_keeps_its_place_for_acks() -> None:
    unacked = link(messages=1)
    unacked.sent(Item("a", 1))
    assert unacked.sent(Item("a", 2)) is AtMostOnce.LINK_BOUND
    assert unacked.holds("a", 2)  # a marker
    assert unacked.ack("a", 2) == 1  # finishes 1, sent before it
    assert not unacked
    assert unacked.markers == 0


def test_taking_back_gives_every_kept_message_per_socket_in_order_and_frees_the_node() -> None:
    totals = UnackedTotals()
    unacked = link(totals=totals)
    for item in (Item("a", 1), Item("b", 7), Item("a", 2)):
        unacked.sent(item)
    taken = unacked.take_all()
    assert [(i.client_uuid, i.seq) for i in taken] == [("a", 1), ("a", 2), ("b", 7)]
    assert not unacked
    assert (totals.messages, totals.bytes) == (0, 0)


def test_two_links_share_the_node_totals() -> None:
    totals = UnackedTotals(max_messages=3)
    first, second = link(totals=totals), link(totals=totals)
    first.sent(Item("a", 1))
    second.sent(Item("b", 1))
    second.sent(Item("b", 2))
    assert first.sent(Item("a", 2)) is AtMostOnce.NODE_BOUND
    second.ack("b", 2)
    assert first.sent(Item("a", 3)) is None


def test_bounds_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        UnackedLimits(0, 1)
    with pytest.raises(ValueError, match="at least 1"):
        UnackedTotals(max_bytes=0)


def test_repr_says_how_much_is_held() -> None:
    unacked = link()
    unacked.sent(Item("a", 1))
    assert repr(unacked) == "<Unacked 1/100 1B sockets=1 markers=0>"


def test_a_batch_is_kept_at_once_and_near_a_bound_one_by_one() -> None:
    totals = UnackedTotals()
    unacked = link(messages=4, totals=totals)
    assert unacked.sent_all([Item("a", 1), Item("b", 1)]) == []
    assert unacked.sent_all([Item("a", 2), Item("a", 3), Item("a", 4)]) == [AtMostOnce.LINK_BOUND]
    assert len(unacked) == 4
    assert (totals.messages, totals.bytes) == (4, 4)
    assert unacked.ack("a", 4) == 3  # a1, a2, a3 kept; a4 past the bound, a marker
