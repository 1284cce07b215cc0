"""Whom a node must hear say no before a 404: the nodes seen alive lately (no I/O, no clock)."""

from __future__ import annotations

from paradoxplex.shared.peers import Peers, to_ask

TTL = 10.0


def test_a_node_seen_is_current_until_the_fleet_shows_it_gone_for_ttl() -> None:
    peers = Peers(ttl=TTL)
    peers.seen(["a", "b"], now=0.0)
    peers.seen(["b"], now=5.0)
    assert peers.current(now=9.0) == {"a", "b"}
    assert peers.current(now=10.5) == {"b"}  # a: 10.5 s of readable fleet without it
    assert peers.current(now=15.5) == set()


def test_time_the_fleet_could_not_be_read_does_not_count() -> None:
    """Redis down from 1 s to 30 s, back empty: nobody is forgotten meanwhile, and each node
    has ``ttl`` seconds from then to register again."""
    peers = Peers(ttl=TTL)
    peers.seen(["a"], now=0.0)
    peers.blind()
    assert peers.current(now=30.0) == {"a"}
    peers.seen([], now=30.0)  # back, empty: a has not registered again yet
    assert peers.current(now=39.0) == {"a"}
    peers.seen(["a"], now=39.5)
    assert peers.current(now=45.0) == {"a"}
    peers.seen([], now=46.0)
    assert peers.current(now=50.0) == set()  # readable since 30 s, a last seen at 39.5 s


def test_a_node_found_dead_is_forgotten_at_once() -> None:
    peers = Peers(ttl=TTL)
    peers.seen(["a", "b"], now=0.0)
    peers.forget("a")
    assert peers.current(now=1.0) == {"b"}
    assert repr(peers) == "<Peers 1 watching>"


def test_whom_a_missed_lookup_asks() -> None:
    states = {"a": "up", "b": "starting", "c": "degraded", "me": "up"}
    assert to_ask(states, {"d", "b"}, "me") == {"a", "c", "d"}
    assert to_ask({}, {"d"}, "me") == {"d"}  # Redis came back empty: the ones seen lately
    assert to_ask({"me": "up"}, set(), "me") == set()
