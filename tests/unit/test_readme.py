"""The README says what the code does: every setting with its flag, variable and default;
every metric name as exported; the commands' synopsis; how the tests find a Redis."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from paradoxplex.node.metrics import Metrics
from paradoxplex.shared.config import NodeConfig, env_name, flag_name
from paradoxplex.shared.flags import CHOICES, default_text

README = (Path(__file__).parents[2] / "README.md").read_text()
NAMES = [spec.name for spec in fields(NodeConfig)]


def table_row(flag: str) -> list[str]:
    for line in README.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if cells and cells[0].strip("`").split(" ")[0] == flag:
            return cells
    raise AssertionError(f"README: no settings row for {flag}")


@pytest.mark.parametrize("name", NAMES)
def test_every_setting_has_its_row_with_variable_and_default(name: str) -> None:
    flag, env, default, _ = table_row(flag_name(name))
    assert env == f"`{env_name(name)}`"
    assert default == default_text(name)
    if name in CHOICES:
        assert flag == f"`{flag_name(name)} {{{','.join(CHOICES[name])}}}`"


def test_every_metric_name_in_the_readme_is_exported() -> None:
    exported = Metrics().exposition()[0].decode()
    named = set(re.findall(r"\b(?:paradoxplex|process)_[a-z_]+[a-z]", README))
    missing = sorted(name for name in named if f" {name} " not in exported)
    assert not missing, f"README names metrics that are not exported: {missing}"
    assert "paradoxplex_drops_total" in named


def test_the_synopsis_lists_the_cluster_flags_and_an_optional_echo_listen() -> None:
    for flag in ("--listen-base", "--admin-base", "--upstream-base", "--redis-port", "--prefix"):
        assert f"[{flag} " in README, flag
    assert "upstream-echo [--listen H:P]" in README


def test_the_test_redis_choice_is_documented() -> None:
    assert "PARADOXPLEX_TEST_REDIS=binary" in README
    assert "`=docker`" in README
