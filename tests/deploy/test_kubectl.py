"""``kubectl kustomize`` (the real one, no cluster needed) renders every overlay, into what the
test renderer of kustomize.py makes of it (the same objects), with the PodDisruptionBudget over
the nodes and, where the monitoring components are added, a ServiceMonitor that reaches every
node's /metrics and a PrometheusRule holding the promtool-tested rules."""

from __future__ import annotations

import re
import shutil
import subprocess
from functools import cache

import pytest
import yaml

from paradoxplex.admin.cli import TOKEN_ENV
from tests.deploy.image import Obj, assert_none, config_of
from tests.deploy.kustomize import (
    DEPLOY,
    container_port,
    get_route,
    k8s_nodes,
    kustomizations,
    pod_labels,
    render,
    selects,
)
from tests.monitoring.tools import JOB, rule_groups

HASHED = re.compile(r"-[a-z0-9]{10}$")  # the name suffix of a generated ConfigMap
OVERLAYS = sorted(path.parent for path in kustomizations() if "overlays" in path.parts)


def kubectl() -> str:
    found = shutil.which("kubectl")
    if found is None:
        pytest.fail(
            "the deploy tests render the overlays with `kubectl kustomize`, and kubectl is "
            "missing: install it (Debian: `apt-get install -y kubectl`, or kubernetes-client)"
        )
    return found


@cache
def kustomized(overlay: str) -> list[Obj]:
    done = subprocess.run(
        [kubectl(), "kustomize", str(DEPLOY / "overlays" / overlay)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"kubectl kustomize deploy/overlays/{overlay}: {done.stderr}"
    return [obj for obj in yaml.safe_load_all(done.stdout) if obj]


def identities(objects: list[Obj]) -> set[str]:
    found = set()
    for obj in objects:
        name = obj["metadata"]["name"]
        if obj["kind"] == "ConfigMap":
            name = HASHED.sub("", name)
        found.add(f"{obj['kind']}/{name}")
    return found


def only(objects: list[Obj], kind: str) -> list[Obj]:
    return [obj for obj in objects if obj["kind"] == kind]


OVERLAY = pytest.mark.parametrize("overlay", [path.name for path in OVERLAYS])


def test_every_overlay_is_found() -> None:
    names = {path.name for path in OVERLAYS}
    assert names == {"self-contained", "external-redis", "external-sentinel", "monitored"}


@OVERLAY
def test_kubectl_renders_what_the_test_renderer_renders(overlay: str) -> None:
    ours = render((DEPLOY / "overlays" / overlay).resolve())
    assert identities(kustomized(overlay)) == identities([obj for _, obj in ours.resources])


@OVERLAY
def test_the_disruption_budget_covers_exactly_the_nodes(overlay: str) -> None:
    objects = kustomized(overlay)
    [budget] = only(objects, "PodDisruptionBudget")
    assert budget["spec"]["maxUnavailable"] == 1
    selector = budget["spec"]["selector"]["matchLabels"]
    chosen = {w["metadata"]["name"] for w in objects if selects(selector, pod_labels(w))}
    assert chosen == {"paradoxplex-node"}
    [node] = [w for w in only(objects, "Deployment") if w["metadata"]["name"] in chosen]
    assert node["spec"]["replicas"] > budget["spec"]["maxUnavailable"]


def test_the_service_monitor_scrapes_every_nodes_metrics_with_the_token() -> None:
    objects = kustomized("monitored")
    [monitor] = only(objects, "ServiceMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"]
    services = [s for s in only(objects, "Service") if selects(selector, s["metadata"]["labels"])]
    assert [s["metadata"]["name"] for s in services] == [JOB]  # the job the alerts select
    assert "jobLabel" not in monitor["spec"]  # so the job is the Service's name
    [service] = services
    [node] = [w for w in only(objects, "Deployment") if w["metadata"]["name"] == "paradoxplex-node"]
    assert selects(service["spec"]["selector"], pod_labels(node))
    nodes = k8s_nodes(render((DEPLOY / "overlays" / "monitored").resolve()))
    assert nodes
    problems: list[str] = []
    for endpoint in monitor["spec"]["endpoints"]:
        [port] = [p for p in service["spec"]["ports"] if p["name"] == endpoint["port"]]
        for found in nodes:
            admin = config_of(found.run).admin.port
            if container_port(found.container, port["targetPort"]) != admin:
                problems.append(f"port {endpoint['port']} is not the admin port {admin}")
            token = {item["name"]: item for item in found.container["env"]}[TOKEN_ENV]
            if endpoint["authorization"]["credentials"] != token["valueFrom"]["secretKeyRef"]:
                problems.append("the scrape's token is not the nodes' admin token")
        if endpoint["path"] != "/metrics" or get_route(endpoint["path"]) is None:
            problems.append(f"path {endpoint['path']} is not the metrics route")
        if endpoint["authorization"]["type"] != "Bearer":
            problems.append("the token is no Bearer credential")
    assert_none(problems)


def test_the_prometheus_rule_holds_the_tested_rules() -> None:
    [rule] = only(kustomized("monitored"), "PrometheusRule")
    assert rule["spec"]["groups"] == rule_groups()


def test_the_monitoring_components_are_optional() -> None:
    for overlay in ("self-contained", "external-redis", "external-sentinel"):
        kinds = {obj["kind"] for obj in kustomized(overlay)}
        assert not kinds & {"ServiceMonitor", "PrometheusRule"}, overlay
