"""``FleetState`` and ``FleetBus`` carry what the product calls, nothing more.

Read from the source with ``ast``: every method and property of the two Protocols must be
used as an attribute somewhere in the node or the admin API outside the backends that
implement them (``fleet/memory.py``, ``fleet/redis/``). A method only tests need belongs in
``tests/support`` (``state.py``, ``bus.py``), written on the public ones.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from paradoxplex.shared.fleet import FleetBus, FleetState

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = [ROOT / "node" / "paradoxplex", ROOT / "admin" / "paradoxplex"]
BACKENDS = [
    ROOT / "node" / "paradoxplex" / "node" / "fleet" / "memory.py",
    ROOT / "node" / "paradoxplex" / "node" / "fleet" / "redis",
]


def members(protocol: type) -> list[str]:
    return sorted(
        name
        for name, value in vars(protocol).items()
        if not name.startswith("_") and (callable(value) or isinstance(value, property))
    )


def attributes_used(paths: list[Path], skip: list[Path]) -> set[str]:
    """Every ``x.name`` in the Python files under ``paths`` but those under ``skip``."""
    used: set[str] = set()
    for root in paths:
        for path in root.rglob("*.py"):
            if any(path == s or s in path.parents for s in skip):
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
            used |= {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    return used


USED = attributes_used(PRODUCT, BACKENDS)


def test_the_protocols_are_read() -> None:
    assert "register_sessions" in members(FleetState)
    assert "send" in members(FleetBus)


@pytest.mark.parametrize(
    "name",
    [f"FleetState.{m}" for m in members(FleetState)] + [f"FleetBus.{m}" for m in members(FleetBus)],
)
def test_every_member_has_a_caller_in_the_product(name: str) -> None:
    member = name.split(".", 1)[1]
    assert member in USED, f"{name} is not called by node/ or admin/: move it to tests/support"


def test_the_checker_sees_a_method_nobody_calls() -> None:
    assert "publish_many" not in USED
    assert "register_session" not in USED
