"""Drop reasons: one enum, a series per reason from the start, the README's table in step, and
no drop counted under a bare string anywhere in the product."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from paradoxplex.node.metrics import Metrics
from paradoxplex.shared.admission import Refusal
from paradoxplex.shared.drops import DropReason

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
PRODUCT = [ROOT / "node", ROOT / "shared", ROOT / "admin"]
# Counters whose label is a reason from an enum: the attribute that holds each on ``Metrics``.
REASON_COUNTERS = {"drops": DropReason, "sockets_refused": Refusal}


def readme_drop_reasons() -> list[str]:
    """The first column of the README's table of drop reasons, in order."""
    lines = README.splitlines()
    start = lines.index("| drop reason | what was not delivered |")
    reasons: list[str] = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        reasons.append(line.strip("|").split("|")[0].strip().strip("`"))
    return reasons


def test_the_readme_table_lists_exactly_the_drop_reasons_in_order() -> None:
    listed = readme_drop_reasons()
    expected = [reason.value for reason in DropReason]
    assert listed == expected, (
        f"README's drop reasons {listed} differ from DropReason {expected}: "
        "add, remove or reorder rows of the table to match the enum"
    )


@pytest.mark.parametrize("reason", list(DropReason) + list(Refusal))
def test_a_reason_is_its_label_the_member_name_in_lower_case(reason: DropReason | Refusal) -> None:
    assert str(reason) == f"{reason}" == reason.value == reason.name.lower()


@pytest.mark.parametrize(("name", "reasons"), sorted(REASON_COUNTERS.items()))
def test_every_reason_has_its_series_at_zero_from_the_start(
    name: str, reasons: type[DropReason] | type[Refusal]
) -> None:
    metrics = Metrics()
    [family] = getattr(metrics, name).collect()
    counted = {
        sample.labels["reason"]: sample.value
        for sample in family.samples
        if sample.name.endswith("_total")
    }
    assert counted == {reason.value: 0.0 for reason in reasons}
    text = metrics.exposition()[0].decode()
    for reason in reasons:
        assert f'{family.name}_total{{reason="{reason.value}"}} 0.0' in text


def test_a_drop_counts_under_the_label_of_its_reason() -> None:
    metrics = Metrics()
    metrics.drops.labels(DropReason.BUS_HOLD_FULL).inc(3)
    sample = metrics.registry.get_sample_value
    assert sample("paradoxplex_drops_total", {"reason": "bus_hold_full"}) == 3.0
    assert metrics.dropped() == 3


def reason_labels_given_as_text(source: str, filename: str) -> list[str]:
    """Each ``<counter>.labels(...)`` of a reason counter given a string, not an enum member."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source, filename)):
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "labels"
        ):
            continue
        counter = node.func.value
        name = counter.attr if isinstance(counter, ast.Attribute) else getattr(counter, "id", "")
        if name in REASON_COUNTERS and any(
            isinstance(arg, ast.Constant | ast.JoinedStr) for arg in node.args
        ):
            found.append((node.lineno, f"{filename}:{node.lineno} {ast.unparse(node)}"))
    return [text for _, text in sorted(found)]


def test_the_check_sees_a_reason_given_as_text() -> None:
    source = 'm.drops.labels("socket_closed").inc()\ndrops.labels(f"x{y}")\n'
    source += "m.drops.labels(DropReason.SOCKET_CLOSED).inc()\nm.other.labels('a')\n"
    assert reason_labels_given_as_text(source, "x.py") == [
        "x.py:1 m.drops.labels('socket_closed')",
        "x.py:2 drops.labels(f'x{y}')",
    ]


def test_no_product_code_counts_a_reason_given_as_text() -> None:
    found = [
        line
        for root in PRODUCT
        for path in sorted(root.rglob("*.py"))
        if "wire" not in path.parts
        for line in reason_labels_given_as_text(path.read_text(), str(path.relative_to(ROOT)))
    ]
    assert not found, found
