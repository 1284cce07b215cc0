"""The node's garbage-collector settings: what is alive at start is frozen, generation 0 is
collected less often, and what is made afterwards is still collected.

These tests run ``gc`` themselves, so they start from a collected heap: what earlier tests
left for the collector (an unclosed transport warns when collected) is collected before, its
warnings set aside. It is not lost: the conftest's ``_module_leftovers`` fails the module that
left it, at that module's end.
"""

from __future__ import annotations

import gc
import sys
import weakref
from collections.abc import Iterator

import pytest

from paradoxplex.node.collector import GEN0, tune_collector


def collect_earlier_garbage() -> None:
    """Collect what is pending, its unraisable warnings set aside (they are other tests')."""
    hook = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: None
    try:
        gc.collect()
    finally:
        sys.unraisablehook = hook


@pytest.fixture
def restored_collector() -> Iterator[None]:
    collect_earlier_garbage()
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


class Cycle:
    def __init__(self) -> None:
        self.other: Cycle | None = None


@pytest.mark.usefixtures("restored_collector")
def test_tuning_freezes_what_is_alive_and_raises_the_first_threshold() -> None:
    gc.unfreeze()
    _, gen1, gen2 = gc.get_threshold()
    alive = [object()]
    tune_collector()
    assert gc.get_freeze_count() > 0
    assert gc.is_tracked(alive)
    assert all(obj is not alive for obj in gc.get_objects())  # frozen: in no generation
    assert gc.get_threshold() == (GEN0, gen1, gen2)


@pytest.mark.usefixtures("restored_collector")
def test_cycles_made_after_tuning_are_still_collected() -> None:
    tune_collector()
    first, second = Cycle(), Cycle()
    first.other, second.other = second, first
    gone = weakref.ref(first)
    del first, second
    gc.collect()
    assert gone() is None
