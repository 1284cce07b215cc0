"""monitoring/: where its files are, the Prometheus binaries that check them, and the metric
names a PromQL expression uses.

- ``binary("promtool")`` / ``binary("prometheus")``: Debian's binaries (``PARADOXPLEX_TEST_
  PROMTOOL`` / ``PARADOXPLEX_TEST_PROMETHEUS`` override). Missing, the test fails and says what
  to install: it never skips (``make test`` installs Debian's package when run as root).
- ``alert_rules()``: every rule of the rule files; ``panels()``: every dashboard panel with
  its queries; ``metric_names(expr)``: the metrics an expression reads.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from paradoxplex.node.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "monitoring"
ALERTS = MONITORING / "alerts"
RULE_TESTS = MONITORING / "tests"
DASHBOARDS = MONITORING / "dashboards"
DASHBOARD = DASHBOARDS / "paradoxplex.json"
JOB = "paradoxplex"  # the scrape job every alert selects

Obj = dict[str, Any]

METRIC = re.compile(r"\b(?:paradoxplex|process)_[a-z_]*[a-z]\b|\bup(?=\{)")
# Grafana's template variables, as the live test gives them values
VARIABLES = {"$__rate_interval": "1m", "$job": JOB, "$instance": ".*"}


def binary(name: str) -> str:
    """The path of Debian's ``prometheus`` or ``promtool``; fails the test when missing."""
    variable = f"PARADOXPLEX_TEST_{name.upper()}"
    path = os.environ.get(variable) or shutil.which(name) or f"/usr/bin/{name}"
    if not Path(path).is_file():
        pytest.fail(
            f"the monitoring tests run Debian's {name} ({path}), which is missing: "
            "`apt-get update && apt-get install -y prometheus` (the package brings prometheus "
            f"and promtool; `make test` installs it when run as root), or set {variable}"
        )
    return path


def rule_files() -> list[Path]:
    return sorted(ALERTS.glob("*.yaml"))


def rule_groups() -> list[Obj]:
    groups: list[Obj] = []
    for path in rule_files():
        groups += yaml.safe_load(path.read_text())["groups"]
    return groups


def alert_rules() -> list[Obj]:
    return [rule for group in rule_groups() for rule in group["rules"] if "alert" in rule]


def dashboard() -> Obj:
    loaded: Obj = json.loads(DASHBOARD.read_text())
    return loaded


def panels(board: Obj | None = None) -> list[Obj]:
    """Every panel that queries (rows hold none), nested ones included."""
    found: list[Obj] = []
    for panel in (board or dashboard())["panels"]:
        found += [inner for inner in panel.get("panels", []) if inner.get("targets")]
        if panel.get("targets"):
            found.append(panel)
    return found


def substitute(expr: str) -> str:
    """A panel's query with its template variables as the live test sets them."""
    for name in sorted(VARIABLES, key=len, reverse=True):
        expr = expr.replace(name, VARIABLES[name])
    return expr


def metric_names(expr: str) -> set[str]:
    return set(METRIC.findall(expr))


def exported_names() -> set[str]:
    """Every sample name a node exports (histogram and counter suffixes included), and
    ``up``, which Prometheus adds to every target."""
    text = Metrics().exposition()[0].decode()
    names = {"up"}
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE):
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_count", f"{name}_sum"}
        elif kind == "counter":
            names.add(name if name.endswith("_total") else f"{name}_total")
        else:
            names.add(name)
    return names
