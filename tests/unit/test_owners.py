"""The owner cache shared by the reply router and the courier (``delivery.replies.Owners``)."""

from __future__ import annotations

import pytest

from paradoxplex.node.delivery import replies
from paradoxplex.node.delivery.replies import Owners


def test_remember_and_forget_a_node() -> None:
    owners = Owners()
    owners.remember("s1", "a")
    owners.remember("s2", "b")
    owners.remember("s3", "a")
    owners.forget_node("a")
    assert owners == {"s2": "b"}
    owners.forget_node("nobody")
    assert owners.get("s2") == "b"


def test_a_full_cache_is_cleared_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replies, "OWNER_CACHE", 3)
    owners = Owners()
    for number in range(3):
        owners.remember(f"s{number}", "a")
    assert len(owners) == 3
    owners.remember("s3", "b")
    assert owners == {"s3": "b"}
