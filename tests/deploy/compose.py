"""docker-compose.yml read into services and ``Run``s, the way Compose would start them."""

from __future__ import annotations

import re
import shlex
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.image import (
    CONFIG_ENV,
    IMAGE_NAME,
    ROOT,
    Obj,
    Run,
    assemble_argv,
    dockerfile,
    image_repository,
    rel,
    toml_text,
)

COMPOSE = ROOT / "docker-compose.yml"
COMPOSE_DEFAULT_STOP_GRACE = 10.0
COMPOSE_CONDITIONS = ("service_started", "service_healthy", "service_completed_successfully")
COMPOSE_VARIABLE = re.compile(r"\$\$|\$\{(\w+)(?::?[-?]([^}]*))?\}|\$(\w+)")
REQUIRED_VARIABLE = re.compile(r"\$\{(\w+):?\?[^}]*\}")
PORT_NEAR_LOOPBACK = re.compile(r"(?:127\.0\.0\.1|localhost)['\"]?\s*[:,]\s*(\d+)")


@cache
def compose_services() -> dict[str, Obj]:
    document = yaml.safe_load(COMPOSE.read_text())
    services = document.get("services") if isinstance(document, dict) else None
    assert isinstance(services, dict), f"{rel(COMPOSE)}: no services"
    return services


def compose_value(where: str, value: Any, problems: list[str]) -> str:
    """A compose value with ``${VAR:-default}`` replaced by its default, ``$$`` by ``$``, and
    a required ``${VAR:?message}`` by a stand-in value (compose refuses to start without it)."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        if REQUIRED_VARIABLE.fullmatch(match.group(0)):
            return f"required-{match.group(1).lower()}"
        if match.group(2) is None:
            problems.append(f"{where}: {match.group(0)} has no default")
            return ""
        return match.group(2)

    if isinstance(value, bool):
        return str(value).lower()
    return COMPOSE_VARIABLE.sub(replace, "" if value is None else str(value))


def compose_builds_here(service: Obj) -> bool:
    build = service.get("build")
    if build is None:
        return False
    spec = {"context": build} if isinstance(build, str) else build
    here = (ROOT / spec.get("context", ".")).resolve() == ROOT
    return here and spec.get("dockerfile", "Dockerfile") == "Dockerfile"


def compose_is_ours(service: Obj) -> bool:
    return compose_builds_here(service) or image_repository(service.get("image", "")) == IMAGE_NAME


def command_list(value: Any) -> list[str] | None:
    if value is None:
        return None
    return shlex.split(value) if isinstance(value, str) else [str(item) for item in value]


def compose_environment(service: Obj) -> dict[str, Any]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return {key: value for key, _, value in (str(item).partition("=") for item in env)}
    assert isinstance(env, dict)
    return env


def compose_toml(where: str, service: Obj, path: str, problems: list[str]) -> Obj | None:
    """The TOML file at ``path`` inside the container, bind-mounted from the repository."""
    for volume in service.get("volumes") or []:
        source, _, target = str(volume).partition(":")
        target = target.split(":")[0]
        if source.startswith(".") and Path(path).is_relative_to(target):
            host = ROOT / source / Path(path).relative_to(target)
            return toml_text(f"{where}: {rel(host)}", host.read_text())
    problems.append(f"{where}: {CONFIG_ENV}={path} is no file mounted from the repository")
    return None


def compose_run(name: str, service: Obj) -> Run | None:
    where = f"{rel(COMPOSE)}: service {name}"
    entrypoint = command_list(service.get("entrypoint"))
    argv = assemble_argv(entrypoint, command_list(service.get("command")))
    if not compose_is_ours(service) or argv is None:
        return None
    run = Run(where, argv, dict(dockerfile().env))
    for key, value in compose_environment(service).items():
        run.env[key] = compose_value(f"{where}: {key}", value, run.problems)
    if run.env.get(CONFIG_ENV):
        run.toml = compose_toml(where, service, run.env[CONFIG_ENV], run.problems)
    return run


def compose_runs() -> dict[str, Run]:
    runs = {name: compose_run(name, service) for name, service in compose_services().items()}
    return {name: run for name, run in runs.items() if run is not None}


def compose_ports(where: str, service: Obj) -> list[tuple[int | None, int]]:
    """(published, target) for each entry of a service's ``ports``."""
    found: list[tuple[int | None, int]] = []
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            published = entry.get("published")
            found.append((int(published) if published else None, int(entry["target"])))
            continue
        parts = str(entry).split("/")[0].split(":")
        if not all(part.isdigit() for part in parts[-2:]):
            pytest.fail(f"{where}: cannot read the ports entry {entry!r} (no ranges, please)")
        found.append((int(parts[-2]) if len(parts) > 1 else None, int(parts[-1])))
    return found


def compose_healthcheck(service: Obj) -> list[str]:
    """A service's healthcheck command: its own, else its image's (for this repository's)."""
    check = service.get("healthcheck")
    if check is None:
        return dockerfile().healthcheck if compose_is_ours(service) else []
    if check.get("disable"):
        return []
    test = check.get("test", [])
    return ["CMD-SHELL", test] if isinstance(test, str) else [str(word) for word in test]


def duration(where: str, text: Any) -> float:
    """A compose duration (``30s``, ``1m30s``, ``1.5s``) in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 0.000001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", str(text))
    if not parts or "".join(number + unit for number, unit in parts) != str(text):
        pytest.fail(f"{where}: cannot read the duration {text!r}")
    return sum(float(number) * units[unit] for number, unit in parts)
