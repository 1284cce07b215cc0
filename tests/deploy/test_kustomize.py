"""deploy/ as each kustomization renders it: files, ports, probes, grace, pods, services."""

from __future__ import annotations

import json
import re
from dataclasses import fields
from pathlib import Path

import pytest

from paradoxplex.admin.app import OPEN_PATHS
from paradoxplex.admin.cli import TOKEN_ENV
from paradoxplex.shared.config import NodeConfig, env_name
from paradoxplex.shared.credentials import redact_url
from paradoxplex.shared.sentinel_url import is_sentinel_url, parse_sentinel_url
from tests.deploy.compose import COMPOSE, compose_builds_here, compose_services
from tests.deploy.image import (
    IMAGE_NAME,
    SHUTDOWN_AFTER_GRACE,
    Obj,
    assert_none,
    config_of,
    image_repository,
    redis_address,
    rel,
    runs_paradoxplex,
    toml_text,
)
from tests.deploy.kustomize import (
    DEPLOY,
    K8S_DEFAULT_TERMINATION_GRACE,
    Rendering,
    components,
    container_port,
    deploy_files,
    get_route,
    ident,
    k8s_nodes,
    k8s_runs,
    kustomization_files,
    kustomizations,
    pod_labels,
    pod_spec,
    render,
    renderings,
    selects,
    yaml_documents,
)


def test_every_kustomization_names_existing_files() -> None:
    problems = []
    for kustomization in [*kustomizations(), *components()]:
        for what, path in kustomization_files(kustomization):
            exists = (path / "kustomization.yaml").is_file() if path.is_dir() else path.is_file()
            if not exists:
                problems.append(f"{rel(kustomization)}: {what} {path.name} does not exist")
    assert_none(problems)


def test_every_deploy_file_parses_and_is_used() -> None:
    every = [*kustomizations(), *components()]
    used = {path.resolve() for k in every for _, path in kustomization_files(k)}
    used |= {path.resolve() for path in every}
    for path in deploy_files():
        if path.suffix == ".toml":
            toml_text(rel(path), path.read_text())
        else:
            yaml_documents(path)
    unused = [rel(path) for path in deploy_files() if path.resolve() not in used]
    assert not unused, f"deploy/: no kustomization.yaml names {unused}"


KUSTOMIZATIONS = pytest.mark.parametrize(
    "rendering", kustomizations(), ids=lambda path: rel(path.parent), indirect=True
)


@pytest.fixture
def rendering(request: pytest.FixtureRequest) -> Rendering:
    path: Path = request.param
    return render(path.parent.resolve())


@KUSTOMIZATIONS
def test_containers_declare_and_probe_what_they_listen_on(rendering: Rendering) -> None:
    problems = [] if k8s_nodes(rendering) else [f"{rel(rendering.root)}: renders no node"]
    for found in k8s_runs(rendering):
        run, container = found.run, found.container
        listening = run.ports()
        declared = {int(port["containerPort"]) for port in container.get("ports", [])}
        if declared != listening:
            problems.append(f"{run.where}: ports {sorted(declared)}, listens on {listening}")
        for kind in ("readinessProbe", "livenessProbe", "startupProbe"):
            probe = container.get(kind) or {}
            action = probe.get("httpGet") or probe.get("tcpSocket")
            if action and container_port(container, action.get("port")) not in listening:
                problems.append(
                    f"{run.where}: {kind} port {action.get('port')!r}, listens on {listening}"
                )
    assert_none(problems)


@KUSTOMIZATIONS
def test_node_probes_ask_the_open_admin_routes(rendering: Rendering) -> None:
    problems = []
    for found in k8s_nodes(rendering):
        where, admin = found.run.where, config_of(found.run).admin.port
        for kind, wanted in (("readinessProbe", "/readyz"), ("livenessProbe", "/livez")):
            probe = found.container.get(kind, {}).get("httpGet", {})
            path = probe.get("path")
            if path is None or container_port(found.container, probe.get("port")) != admin:
                problems.append(f"{where}: {kind} is no httpGet on the admin port {admin}")
            elif get_route(path) is None:
                problems.append(f"{where}: {kind} path {path} is no GET route of the admin API")
            elif path not in OPEN_PATHS:
                problems.append(f"{where}: {kind} path {path} needs the admin token")
            elif path != wanted:
                problems.append(f"{where}: {kind} path {path}, want {wanted}")
    assert_none(problems)


def prestop_seconds(container: Obj) -> float:
    hook = container.get("lifecycle", {}).get("preStop") or {}
    if "sleep" in hook:
        return float(hook["sleep"]["seconds"])
    command = " ".join(hook.get("exec", {}).get("command", []))
    sleep = re.search(r"\bsleep\W+(\d+(?:\.\d+)?)", command)
    return float(sleep.group(1)) if sleep else 0.0


@KUSTOMIZATIONS
def test_termination_grace_covers_prestop_and_drain(rendering: Rendering) -> None:
    problems = []
    for found in k8s_nodes(rendering):
        spec = pod_spec(found.workload)
        grace = float(spec.get("terminationGracePeriodSeconds", K8S_DEFAULT_TERMINATION_GRACE))
        pre_stop = prestop_seconds(found.container)
        needed = pre_stop + config_of(found.run).drain_grace + SHUTDOWN_AFTER_GRACE
        if grace <= needed:
            problems.append(
                f"{found.run.where}: terminationGracePeriodSeconds {grace:g} is not"
                f" over preStop {pre_stop:g} + drain_grace + {SHUTDOWN_AFTER_GRACE:g}"
            )
    assert_none(problems)


@KUSTOMIZATIONS
def test_node_ids_and_tokens_come_from_the_pod(rendering: Rendering) -> None:
    problems = []
    for found in k8s_nodes(rendering):
        env = {item["name"]: item for item in found.container.get("env", [])}
        node_id = env.get(env_name("node_id"), {}).get("valueFrom", {}).get("fieldRef", {})
        if node_id.get("fieldPath") != "metadata.name":
            problems.append(f"{found.run.where}: {env_name('node_id')} is not the pod's name")
        token = env.get(TOKEN_ENV, {})
        if "value" in token or "secretKeyRef" not in token.get("valueFrom", {}):
            problems.append(f"{found.run.where}: {TOKEN_ENV} does not come from a Secret")
    assert_none(problems)


@KUSTOMIZATIONS
def test_the_config_file_holds_settings_that_take_effect(rendering: Rendering) -> None:
    known = {spec.name for spec in fields(NodeConfig)}
    problems = []
    for path, configmap in rendering.of_kind("ConfigMap"):
        for key, text in configmap.get("data", {}).items():
            if key.endswith(".toml"):
                where = f"{rel(path)}: {ident(configmap)} key {key}"
                unknown = {name.replace("-", "_") for name in toml_text(where, text)} - known
                problems += [f"{where}: {name} is no node setting" for name in sorted(unknown)]
    for found in k8s_nodes(rendering):
        run = found.run
        problems += run.problems
        if run.toml is None:
            problems.append(f"{run.where}: reads no TOML file")
        for key in run.toml or {}:
            variable = env_name(key.replace("-", "_"))
            if variable in run.env:
                problems.append(f"{run.where}: the TOML's {key} is dead: ${variable} beats it")
    assert_none(problems)


@KUSTOMIZATIONS
def test_services_and_budgets_select_the_right_pods(rendering: Rendering) -> None:
    pods = {ident(w): (pod_labels(w), w) for _, w in rendering.workloads()}
    nodes = {ident(found.workload) for found in k8s_nodes(rendering)}
    problems = []
    headless = []
    for path, service in rendering.of_kind("Service"):
        where = f"{rel(path)}: {ident(service)}"
        selector = service.get("spec", {}).get("selector", {})
        chosen = {name for name, (labels, _) in pods.items() if selects(selector, labels)}
        if not chosen:
            problems.append(f"{where}: selector {selector} matches no pods")
        if chosen == nodes and service["spec"].get("clusterIP") == "None":
            headless.append(ident(service))
        for port in service.get("spec", {}).get("ports", []):
            target = port.get("targetPort", port.get("port"))
            for name in sorted(chosen):
                containers = pod_spec(pods[name][1]).get("containers", [])
                numbers = {int(p["containerPort"]) for c in containers for p in c.get("ports", [])}
                if not any(container_port(c, target) in numbers for c in containers):
                    problems.append(f"{where}: targetPort {target!r} is no port of {name}")
    if not headless:
        problems.append(
            f"{rel(rendering.root)}: no headless Service (clusterIP: None) selects"
            f" exactly the nodes {nodes}"
        )
    budgets = rendering.of_kind("PodDisruptionBudget")
    if not budgets:
        problems.append(f"{rel(rendering.root)}: no PodDisruptionBudget")
    for path, budget in budgets:
        selector = budget.get("spec", {}).get("selector", {}).get("matchLabels", {})
        chosen = {name for name, (labels, _) in pods.items() if selects(selector, labels)}
        if chosen != nodes:
            problems.append(f"{rel(path)}: {ident(budget)} selects {chosen}, not {nodes}")
    for path, workload in rendering.workloads():
        selector = workload.get("spec", {}).get("selector", {}).get("matchLabels", {})
        if not selects(selector, pod_labels(workload)):
            problems.append(f"{rel(path)}: {ident(workload)}'s selector misses its own pods")
    assert_none(problems)


@KUSTOMIZATIONS
def test_nodes_reach_upstreams_and_redis_through_services(rendering: Rendering) -> None:
    problems = []
    for found in k8s_nodes(rendering):
        config = config_of(found.run)
        targets = [(str(u), u.host, u.port) for u in config.upstream]
        redis = redis_address(config.redis) if config.redis else None
        if redis is not None:
            targets.append((str(config.redis), *redis))
        if config.redis and is_sentinel_url(config.redis):  # each sentinel
            shown = redact_url(config.redis)
            targets += [(shown, *found) for found in parse_sentinel_url(config.redis).sentinels]
        for text, host, port in targets:
            if "." in host and not host.endswith((".svc", ".svc.cluster.local")):
                continue  # outside the cluster
            service = rendering.find("Service", host.split(".")[0])
            ports = {p.get("port") for p in (service or {}).get("spec", {}).get("ports", [])}
            if port not in ports:
                problems.append(f"{found.run.where}: {text}: no Service {host} with port {port}")
    assert_none(problems)


def test_kubernetes_runs_the_image_compose_builds() -> None:
    built = {
        image_repository(service.get("image", ""))
        for service in compose_services().values()
        if compose_builds_here(service)
    }
    problems = [] if built == {IMAGE_NAME} else [f"{rel(COMPOSE)}: builds {built}"]
    for rendering in renderings():
        where = rel(rendering.root)
        containers = [
            c for _, w in rendering.workloads() for c in pod_spec(w).get("containers", [])
        ]
        images = [found.container["image"] for found in k8s_runs(rendering)]
        refs = {rendering.images.get(image, image) for image in images}
        if len(refs) != 1:
            problems.append(f"{where}: paradoxplex containers run images {refs}; want one")
        for container in containers:
            ours = image_repository(container.get("image", "")) == IMAGE_NAME
            words = [*container.get("command", []), *container.get("args", [])]
            if not ours and ("PARADOXPLEX_" in json.dumps(container) or runs_paradoxplex(words)):
                problems.append(
                    f"{where}: {container['name']} runs paradoxplex on another image,"
                    f" {container.get('image')}"
                )
        for image in rendering.images:
            if not any(container.get("image") == image for container in containers):
                problems.append(f"{where}: the images entry {image} matches no container")
    assert_none(problems)


def test_the_sentinel_overlay_gives_nodes_a_sentinel_url_and_no_redis() -> None:
    rendering = render(DEPLOY / "overlays" / "external-sentinel")
    assert rendering.find("StatefulSet", "redis") is None
    assert rendering.find("Service", "redis") is None
    urls = {config_of(found.run).redis for found in k8s_nodes(rendering)}
    assert len(urls) == 1
    (url,) = urls
    assert url is not None
    parsed = parse_sentinel_url(url)
    assert (len(parsed.sentinels), parsed.service) == (3, "mymaster")
    assert parsed.password  # placeholders for both logins
    assert parsed.sentinel_password
