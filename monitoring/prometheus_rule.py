"""Write the PrometheusRule of deploy/components/prometheus-rule from the promtool-tested rule
file, monitoring/alerts/paradoxplex.yaml, so the two cannot drift.

    python monitoring/prometheus_rule.py           write it
    python monitoring/prometheus_rule.py --check   exit 1 when the committed file differs
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "monitoring" / "alerts" / "paradoxplex.yaml"
TARGET = ROOT / "deploy" / "components" / "prometheus-rule" / "prometheus-rule.yaml"
HEADER = """\
# Generated from monitoring/alerts/paradoxplex.yaml by monitoring/prometheus_rule.py: do not
# edit; change the rule file (and its promtool tests), then run that script.
# Your Prometheus picks PrometheusRules by label (its ruleSelector, e.g. `release: <name>` with
# kube-prometheus-stack): add that label in your overlay.
"""


def prometheus_rule(groups: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "paradoxplex",
            "labels": {"app.kubernetes.io/name": "paradoxplex"},
        },
        "spec": {"groups": groups},
    }


def render() -> str:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    body = yaml.safe_dump(prometheus_rule(groups), sort_keys=False, width=100)
    return HEADER + body


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if TARGET.read_text() != text:
            print(f"{TARGET.relative_to(ROOT)} is stale: run python {Path(__file__).name}")
            return 1
        return 0
    TARGET.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
