"""docker-compose.yml: ports, health checks, names, images, start order and stop grace."""

from __future__ import annotations

import json
import re

import yaml

from paradoxplex.admin.cli import TOKEN_ENV
from tests.deploy.compose import (
    COMPOSE,
    COMPOSE_CONDITIONS,
    COMPOSE_DEFAULT_STOP_GRACE,
    PORT_NEAR_LOOPBACK,
    command_list,
    compose_builds_here,
    compose_healthcheck,
    compose_is_ours,
    compose_ports,
    compose_runs,
    compose_services,
    duration,
)
from tests.deploy.image import (
    IMAGE_NAME,
    ROOT,
    SHUTDOWN_AFTER_GRACE,
    assert_none,
    config_of,
    image_repository,
    redis_address,
    rel,
    runs_paradoxplex,
    uncompilable,
)


def test_compose_ports_and_healthchecks_match_what_the_containers_listen_on() -> None:
    runs = compose_runs()
    problems = []
    published: dict[int, str] = {}
    for name, service in compose_services().items():
        where = f"{rel(COMPOSE)}: service {name}"
        listening = runs[name].ports() if name in runs else None
        targets = set()
        for host_port, target in compose_ports(where, service):
            targets.add(target)
            if listening is not None and target not in listening:
                problems.append(f"{where}: publishes {target}, listens on {sorted(listening)}")
            if host_port in published:
                problems.append(f"{where}: host port {host_port} is {published[host_port]}'s too")
            if host_port is not None:
                published[host_port] = name
        if name in runs and runs[name].command == "node":
            config = config_of(runs[name])
            missing = {config.listen.port, config.admin.port} - targets
            problems += [f"{where}: port {port} is not published" for port in sorted(missing)]
        check = compose_healthcheck(service)
        problems += uncompilable(f"{where}: healthcheck", check)
        for port in PORT_NEAR_LOOPBACK.findall(" ".join(check)):
            if listening is not None and int(port) not in listening:
                problems.append(f"{where}: healthcheck probes {port}, listens on {listening}")
    assert_none(problems)


def test_compose_nodes_reach_upstreams_and_redis_by_service_name() -> None:
    services = compose_services()
    runs = compose_runs()
    echoes = {name: run.ports() for name, run in runs.items() if run.command == "upstream-echo"}
    problems = []
    for run in runs.values():
        if run.command != "node":
            continue
        config = config_of(run)
        for upstream in config.upstream:
            if upstream.host not in services:
                problems.append(f"{run.where}: upstream {upstream}: no such service")
            elif upstream.host in echoes and upstream.port not in echoes[upstream.host]:
                problems.append(
                    f"{run.where}: upstream {upstream}: {upstream.host} listens on"
                    f" {echoes[upstream.host]}"
                )
        redis = redis_address(config.redis) if config.redis else None
        if redis is not None and redis[0] not in services:
            problems.append(f"{run.where}: redis {config.redis}: no service {redis[0]}")
    assert_none(problems)


def test_compose_nodes_share_one_dns_alias_and_have_distinct_ids() -> None:
    runs = compose_runs()
    nodes = {name for name, run in runs.items() if run.command == "node"}
    assert len(nodes) >= 2, f"{rel(COMPOSE)}: fewer than two node services"
    aliases: dict[str, set[str]] = {}
    for name, service in compose_services().items():
        networks = service.get("networks") or {}
        for network in networks.values() if isinstance(networks, dict) else []:
            for alias in (network or {}).get("aliases", []):
                aliases.setdefault(alias, set()).add(name)
    assert nodes in aliases.values(), (
        f"{rel(COMPOSE)}: no network alias is shared by exactly the nodes {sorted(nodes)}:"
        f" {aliases}"
    )
    ids = [config_of(runs[name]).node_id for name in sorted(nodes)]
    assert len(set(ids)) == len(ids), f"{rel(COMPOSE)}: node ids repeat: {ids}"


def test_compose_builds_the_image_once_and_every_paradoxplex_service_uses_it() -> None:
    problems = []
    builders = [
        name for name, service in compose_services().items() if compose_builds_here(service)
    ]
    if len(builders) != 1:
        problems.append(f"{rel(COMPOSE)}: services {builders} build ./Dockerfile; want one")
    image = compose_services()[builders[0]].get("image", "") if builders else ""
    if image_repository(image) != IMAGE_NAME:
        problems.append(f"{rel(COMPOSE)}: the built image is {image!r}; want {IMAGE_NAME}:TAG")
    for name, service in compose_services().items():
        ours = (
            compose_is_ours(service)
            or "PARADOXPLEX_" in json.dumps(service)
            or runs_paradoxplex(command_list(service.get("command")) or [])
        )
        if ours and service.get("image") != image:
            problems.append(f"{rel(COMPOSE)}: service {name} does not run the image {image!r}")
        elif ours and name not in builders and service.get("pull_policy") != "never":
            problems.append(
                f"{rel(COMPOSE)}: service {name} would be pulled from a registry: "
                "pull_policy: never (the image is built here)"
            )
    assert_none(problems)


def test_compose_requires_the_admin_token_and_publishes_admin_apis_on_loopback() -> None:
    text = COMPOSE.read_text()
    problems = []
    for found in re.finditer(rf"\$\{{{TOKEN_ENV}([^}}]*)\}}", text):
        if not found.group(1).startswith(":?"):
            problems.append(f"{rel(COMPOSE)}: {found.group(0)} is not required (:?message)")
    for name, run in compose_runs().items():
        if run.command != "node":
            continue
        admin = config_of(run).admin.port
        for entry in compose_services()[name].get("ports") or []:
            parts = str(entry).split(":")
            if parts[-1] == str(admin) and (len(parts) < 3 or parts[0] != "127.0.0.1"):
                problems.append(
                    f"{rel(COMPOSE)}: service {name} publishes its admin API "
                    f"as {entry!r}; want 127.0.0.1:PORT:{admin}"
                )
    assert_none(problems)


def test_compose_v2_is_named_where_the_file_needs_it() -> None:
    if "name" in yaml.safe_load(COMPOSE.read_text()):
        for path in (COMPOSE, ROOT / "README.md"):
            assert "Compose v2" in path.read_text(), f"{rel(path)}: say that Compose v2 is needed"


def test_compose_depends_on_waits_only_for_what_can_report() -> None:
    services = compose_services()
    problems = []
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        rules = depends.items() if isinstance(depends, dict) else ((item, {}) for item in depends)
        for target, rule in rules:
            where = f"{rel(COMPOSE)}: service {name} depends_on {target}"
            condition = (rule or {}).get("condition", "service_started")
            if target not in services:
                problems.append(f"{where}: no such service")
            elif condition not in COMPOSE_CONDITIONS:
                problems.append(f"{where}: unknown condition {condition!r}")
            elif condition == "service_healthy" and not compose_healthcheck(services[target]):
                problems.append(f"{where}: service_healthy, but {target} has no healthcheck")
    assert_none(problems)


def test_compose_stop_grace_covers_the_drain() -> None:
    problems = []
    for name, run in compose_runs().items():
        if run.command != "node":
            continue
        grace = compose_services()[name].get("stop_grace_period")
        seconds = COMPOSE_DEFAULT_STOP_GRACE if grace is None else duration(run.where, grace)
        needed = config_of(run).drain_grace + SHUTDOWN_AFTER_GRACE
        if seconds <= needed:
            problems.append(
                f"{run.where}: stop_grace_period {grace!r} is not over drain_grace"
                f" + {SHUTDOWN_AFTER_GRACE:g} s = {needed:g} s"
            )
    assert_none(problems)
