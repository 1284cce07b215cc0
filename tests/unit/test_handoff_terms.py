"""Whether a new process may take over a running node: the same node, listener, framing,
fleet; everything else may change (that is what an upgrade is for)."""

from __future__ import annotations

import dataclasses

import pytest

from paradoxplex.node.handoff.terms import PROTOCOL, Terms, refusal, terms_of
from paradoxplex.shared.config import load_config

OLD = Terms(
    protocol=PROTOCOL,
    node_id="n1",
    listen="0.0.0.0:7999",
    framing="length",
    max_frame=65536,
    proxy_protocol=False,
    tls=False,
    fleet="redis:px",
    admin="127.0.0.1:8000",
)


def test_the_same_terms_are_compatible() -> None:
    assert refusal(OLD, OLD) is None


def test_a_new_process_without_a_node_id_takes_the_old_ones() -> None:
    assert refusal(OLD, dataclasses.replace(OLD, node_id="")) is None


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"node_id": "n2"}, "different --node-id: the running node is 'n1', not 'n2'"),
        ({"listen": "0.0.0.0:7998"}, "different --listen: the running node has 0.0.0.0:7999"),
        ({"framing": "line"}, "different --framing: the running node has length, not line"),
        ({"max_frame": 1024}, "different --max-frame"),
        ({"proxy_protocol": True}, "different --proxy-protocol: the running node has it off"),
        ({"tls": True}, "different --tls-cert"),
        ({"fleet": "memory"}, "different --redis/--key-prefix: the running node has redis:px"),
        ({"admin": "127.0.0.1:9000"}, "different --admin"),
        ({"protocol": PROTOCOL + 1}, f"handoff protocol {PROTOCOL + 1} cannot talk"),
        ({"workers": 2}, "--workers"),
    ],
)
def test_what_must_match_is_refused_in_one_line_naming_it(
    change: dict[str, object], words: str
) -> None:
    why = refusal(OLD, dataclasses.replace(OLD, **change))  # type: ignore[arg-type]
    assert why is not None
    assert words in why
    assert "\n" not in why


def test_terms_come_from_the_settings() -> None:
    config = load_config(
        {"node_id": "n1", "framing": "line", "redis": "redis://r:1", "key_prefix": "px"}, {}
    )
    terms = terms_of(config)
    assert (terms.node_id, terms.framing, terms.fleet) == ("n1", "line", "redis:px")
    assert terms_of(load_config({}, {})).fleet == "memory"
    running = terms_of(load_config({"node_id": "n1", "framing": "line"}, {}))
    upgraded = load_config({"node_id": "n1", "write_buffer": "4096", "framing": "line"}, {})
    assert refusal(running, terms_of(upgraded)) is None
