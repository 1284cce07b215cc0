"""The image and every container of it, on every platform: Dockerfile, compose and deploy/."""

from __future__ import annotations

import re
import shlex

import pytest

from paradoxplex.admin.cli import TOKEN_ENV
from paradoxplex.node.cli import main as cli
from paradoxplex.node.cli.healthcheck import target_of
from paradoxplex.shared.errors import ConfigError
from tests.deploy.compose import COMPOSE, compose_runs, compose_services
from tests.deploy.image import (
    DOCKERFILE,
    ROOT,
    Run,
    assemble_argv,
    assert_none,
    dockerfile,
    known_env_names,
    rel,
)
from tests.deploy.kustomize import deploy_files, k8s_runs, renderings


def all_runs() -> list[Run]:
    runs = list(compose_runs().values())
    return runs + [found.run for rendering in renderings() for found in k8s_runs(rendering)]


def test_the_dockerfile_builds_a_slim_non_root_image_of_this_repository() -> None:
    image = dockerfile()
    problems = []
    if len(image.bases) < 2:
        problems.append(f"Dockerfile: stages FROM {image.bases}; want a builder and a final one")
    if image.bases[-1:] != ["python:3.11-slim"]:
        problems.append(f"Dockerfile: the final stage is FROM {image.bases[-1:]}")
    if image.user.split(":")[0] != "10001":
        problems.append(f"Dockerfile: USER {image.user!r}, want 10001")
    problems += [
        f"Dockerfile: the final stage copies {copied!r} from the build context"
        for copied in image.copies
        if not copied.startswith("--from=")
    ]
    if image.entrypoint != ["paradoxplex"] or image.cmd != ["node"]:
        problems.append(f"Dockerfile: ENTRYPOINT {image.entrypoint} CMD {image.cmd}")
    assert_none(problems)


def test_the_dockerignore_keeps_the_context_small() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    missing = {".git", ".venv", "tests", "bench"} - {line.strip().rstrip("/") for line in lines}
    assert not missing, f".dockerignore: does not exclude {sorted(missing)}"


def test_the_image_exposes_and_probes_the_configured_ports() -> None:
    image = dockerfile()
    config = Run("Dockerfile: ENV", ["node"], image.env | {TOKEN_ENV: "token"}).config()
    problems = []
    if image.expose != {config.listen.port, config.admin.port}:
        problems.append(
            f"Dockerfile: EXPOSE {sorted(image.expose)}, ENV sets {config.listen}"
            f" and {config.admin}"
        )
    if image.healthcheck[:2] != ["paradoxplex", "health"]:
        pytest.fail(f"Dockerfile: HEALTHCHECK {image.healthcheck}; want `paradoxplex health`")
    cli.build_parser().parse_args(image.healthcheck[1:])
    target = target_of([*image.entrypoint, *image.cmd], image.env)
    if (target.kind, target.address.port) != ("admin", config.admin.port):
        problems.append(
            f"Dockerfile: the node's HEALTHCHECK probes {target}, admin is {config.admin}"
        )
    assert_none(problems)


def test_every_container_of_the_image_has_a_health_check_for_its_role() -> None:
    """The image's HEALTHCHECK probes what PID 1 runs: an upstream-echo container is healthy
    when its gRPC port answers, not unhealthy for lack of an admin API (as it was)."""
    problems = []
    for name, run in compose_runs().items():
        service = compose_services()[name]
        if "healthcheck" in service:
            continue  # its own
        target = target_of(["paradoxplex", *run.argv], run.env)
        if target.address.port not in run.ports():
            problems.append(
                f"{run.where}: the image's health check probes {target}, "
                f"it listens on {sorted(run.ports())}"
            )
    assert_none(problems)


def test_the_dockerfile_needs_no_frontend_image_and_says_how_to_reach_the_host() -> None:
    text = DOCKERFILE.read_text()
    assert not re.search(r"^#\s*syntax\s*=", text, re.MULTILINE), (
        "Dockerfile: a `# syntax=` line makes BuildKit fetch a frontend image"
    )
    if "host.docker.internal" in text:
        assert "--add-host=host.docker.internal:host-gateway" in text


def test_every_paradoxplex_command_parses() -> None:
    image = dockerfile()
    invocations = [("Dockerfile: ENTRYPOINT + CMD", [*image.entrypoint[1:], *image.cmd])]
    invocations += [(run.where, run.argv) for run in all_runs()]
    for rendering in renderings():
        for found in k8s_runs(rendering):
            hook = found.container.get("lifecycle", {}).get("preStop", {}).get("exec", {})
            argv = assemble_argv(hook["command"], []) if hook else None
            if argv is not None:
                invocations.append((f"{found.run.where}: preStop", argv))
    problems = []
    for where, argv in invocations:
        try:
            cli.build_parser().parse_args(argv)
        except SystemExit:
            problems.append(f"{where}: `paradoxplex {shlex.join(argv)}` does not parse")
    assert_none(problems)


def test_every_paradoxplex_environment_variable_is_one_that_is_read() -> None:
    known = known_env_names()
    problems = [
        f"{rel(path)}: {name} is no setting of the node nor of the admin CLI"
        for path in [DOCKERFILE, COMPOSE, *deploy_files()]
        for name in sorted(set(re.findall(r"PARADOXPLEX_[A-Z0-9_]+", path.read_text())))
        if name not in known
    ]
    assert_none(problems)


def test_every_node_container_loads_its_settings() -> None:
    runs = [run for run in all_runs() if run.command == "node"]
    assert len(runs) >= 2, "no node containers in docker-compose.yml or deploy/"
    problems = []
    for run in runs:
        problems += run.problems
        try:
            config = run.config()
        except ConfigError as error:
            problems.append(f"{run.where}: {error}")
            continue
        if config.admin.loopback:
            problems.append(f"{run.where}: the admin API on {config.admin} is unreachable")
    assert_none(problems)
