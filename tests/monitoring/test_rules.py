"""The alerting rules of monitoring/alerts: promtool checks them and runs their unit tests,
each alert is tested firing and not firing, reads metrics a node exports, selects the scrape
job, has a summary, a severity and a runbook; the Kubernetes PrometheusRule carries them."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import defaultdict

import pytest
import yaml

from tests.monitoring.tools import (
    JOB,
    MONITORING,
    ROOT,
    RULE_TESTS,
    Obj,
    alert_rules,
    binary,
    exported_names,
    metric_names,
    rule_files,
    rule_groups,
)

PROMETHEUS_RULE = ROOT / "deploy" / "components" / "prometheus-rule" / "prometheus-rule.yaml"
RUNBOOKS = MONITORING / "README.md"
ALERTS = [rule["alert"] for rule in alert_rules()]
METRIC_CALL = r"\b(?:paradoxplex_|process_|up\{)"  # each metric a selector follows


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary("promtool"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def test_promtool_checks_the_rule_files() -> None:
    files = [str(path.relative_to(ROOT)) for path in rule_files()]
    assert files == ["monitoring/alerts/paradoxplex.yaml"]
    done = promtool("check", "rules", *files)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in done.stdout


def test_promtool_runs_the_unit_tests_of_the_rules() -> None:
    tests = sorted(str(path.relative_to(ROOT)) for path in RULE_TESTS.glob("*.yaml"))
    assert tests
    done = promtool("test", "rules", *tests)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("SUCCESS") == len(tests), done.stdout


def test_each_alert_is_tested_firing_and_not_firing() -> None:
    seen: dict[str, set[bool]] = defaultdict(set)
    for path in RULE_TESTS.glob("*.yaml"):
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                seen[check["alertname"]].add(bool(check.get("exp_alerts")))
    missing = {alert: {True, False} - seen[alert] for alert in ALERTS}
    assert not {alert: sorted(m) for alert, m in missing.items() if m}, "firing/not firing untested"
    assert set(seen) <= set(ALERTS), f"tests of alerts that do not exist: {set(seen) - set(ALERTS)}"


@pytest.mark.parametrize("rule", alert_rules(), ids=ALERTS)
def test_each_alert_has_a_summary_a_severity_and_a_runbook(rule: Obj) -> None:
    assert rule["labels"]["severity"] in ("critical", "warning")
    assert rule["annotations"]["summary"]
    runbook = rule["annotations"]["runbook"]
    assert runbook == f"monitoring/README.md#{rule['alert'].lower()}"
    headings = re.findall(r"^#+ (\S+)$", RUNBOOKS.read_text(), re.MULTILINE)
    assert rule["alert"] in headings, f"monitoring/README.md has no runbook for {rule['alert']}"


@pytest.mark.parametrize("rule", alert_rules(), ids=ALERTS)
def test_each_alert_reads_exported_metrics_of_the_scrape_job(rule: Obj) -> None:
    expr = rule["expr"]
    names = metric_names(expr)
    assert names, expr
    assert names <= exported_names(), f"not exported by a node: {names - exported_names()}"
    selectors = re.findall(r"\{([^}]*)\}", expr)
    assert len(selectors) == len(re.findall(METRIC_CALL, expr))
    assert all(f'job="{JOB}"' in selector for selector in selectors), expr


def test_the_prometheus_rule_carries_the_same_rules() -> None:
    rule = yaml.safe_load(PROMETHEUS_RULE.read_text())
    assert rule["kind"] == "PrometheusRule"
    assert rule["spec"]["groups"] == rule_groups()
    done = subprocess.run(
        [sys.executable, str(MONITORING / "prometheus_rule.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stdout
