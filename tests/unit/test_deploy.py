"""The Dockerfile, docker-compose.yml and deploy/ agree with the CLI, the config and the routes.

Rules:
- Static: reads repository files only; no Docker, no cluster, no network, no kustomize binary.
- Every container of the image built from ``Dockerfile`` becomes a ``Run``: its argv as Docker
  or Kubernetes assembles it from ENTRYPOINT/CMD and the overrides, its environment (the
  image's ENV overlaid with the container's, references resolved) and its TOML file. The
  checks then ask the real parser (``build_parser``) and loader (``load_config``).
- Kubernetes manifests are checked as each ``kustomization.yaml`` renders them, by a small
  renderer that knows what deploy/ uses (resources, strategic-merge patch files,
  configMapGenerator, images, labels). A kustomization using anything else fails here:
  extend ``render`` when deploy/ grows.
- Every failure names the file and the offending value; a test lists all its failures at once.
"""

from __future__ import annotations

import argparse
import base64
import copy
import inspect
import json
import re
import shlex
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from paradoxplex.admin import openapi
from paradoxplex.admin.app import OPEN_PATHS
from paradoxplex.admin.cli import TOKEN_ENV, URL_ENV
from paradoxplex.node import cli
from paradoxplex.node.health import target_of
from paradoxplex.shared.config import NodeConfig, env_name, load_config, parse_address
from paradoxplex.shared.errors import ConfigError

Obj = dict[str, Any]

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
DEPLOY = ROOT / "deploy"
IMAGE_NAME = "paradoxplex"  # the repository name manifests give the Dockerfile's image
CONFIG_ENV = "PARADOXPLEX_CONFIG"
# After drain_grace, node.stop() still flushes read data (<= 5 s), closes sockets (<= 2 s) and
# closes upstream links (<= 2 s): the platform's kill timer must leave room for that too.
SHUTDOWN_AFTER_GRACE = 9.0
COMPOSE_DEFAULT_STOP_GRACE = 10.0
K8S_DEFAULT_TERMINATION_GRACE = 30.0
POD_NAME = "paradoxplex-node-5d8f7b9c4-x2x7q"  # what fieldRef metadata.name stands for here
REDIS_PORT = 6379
PORT_NEAR_LOOPBACK = re.compile(r"(?:127\.0\.0\.1|localhost)['\"]?\s*[:,]\s*(\d+)")
URL = re.compile(r"https?://([^/'\"\s]+)(/[^'\"\s?]*)")
COMPOSE_VARIABLE = re.compile(r"\$\$|\$\{(\w+)(?::?[-?]([^}]*))?\}|\$(\w+)")
REQUIRED_VARIABLE = re.compile(r"\$\{(\w+):?\?[^}]*\}")
K8S_VARIABLE = re.compile(r"\$\((\w+)\)")
URL_AUTHORITY = re.compile(r"^\w+://(?:[^@/]*@)?([^/]*)")
KUSTOMIZATION_KEYS = {
    "apiVersion",
    "kind",
    "resources",
    "patches",
    "configMapGenerator",
    "images",
    "labels",
}
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job")
COMPOSE_CONDITIONS = ("service_started", "service_healthy", "service_completed_successfully")


def rel(path: Path) -> str:
    return str(path.resolve().relative_to(ROOT))


def assert_none(problems: list[str]) -> None:
    assert not problems, "\n".join(problems)


def image_repository(image: str) -> str:
    """``registry:5000/team/name:tag@sha256:…`` → ``name``."""
    return image.split("@")[0].rsplit("/", 1)[-1].split(":")[0]


def redis_address(url: str) -> tuple[str, int] | None:
    """(host, port) of a redis:// or rediss:// URL; None for unix://."""
    match = URL_AUTHORITY.match(url)
    if url.startswith("unix://") or match is None:
        return None
    host, _, port = match.group(1).rpartition(":")
    return (host, int(port)) if host and port.isdigit() else (match.group(1), REDIS_PORT)


def python_scripts(command: list[str]) -> list[str]:
    """The SCRIPT of each ``python -c SCRIPT`` in an exec-form command."""
    return [
        command[index + 1]
        for index, word in enumerate(command[:-1])
        if word == "-c" and index > 0 and "python" in command[index - 1]
    ]


def uncompilable(where: str, command: list[str]) -> list[str]:
    problems = []
    for code in python_scripts(command):
        try:
            compile(code, where, "exec")
        except SyntaxError as error:
            problems.append(f"{where}: the python -c script does not compile: {error}")
    return problems


def toml_text(where: str, text: str) -> Obj:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        pytest.fail(f"{where}: not valid TOML: {error}")


# ---- the Dockerfile ---------------------------------------------------------------------


@dataclass
class Dockerfile:
    """What the final stage sets, and the base image of every stage."""

    bases: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    expose: set[int] = field(default_factory=set)
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    healthcheck: list[str] = field(default_factory=list)
    user: str = ""
    copies: list[str] = field(default_factory=list)


def dockerfile_instructions(text: str) -> Iterator[tuple[str, str]]:
    """(INSTRUCTION, rest) per logical line: comments dropped, ``\\`` continuations joined."""
    logical = ""
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        if line.rstrip().endswith("\\"):
            logical += line.rstrip()[:-1] + " "
            continue
        logical += line
        if logical.strip():
            word, _, rest = logical.strip().partition(" ")
            yield word.upper(), rest.strip()
        logical = ""


def exec_form(word: str, rest: str) -> list[str]:
    try:
        value = json.loads(rest)
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, list):
        pytest.fail(f"Dockerfile: {word} {rest!r} is not in exec (JSON array) form")
    return [str(item) for item in value]


@cache
def dockerfile() -> Dockerfile:
    args: dict[str, str] = {}
    image = Dockerfile()
    for word, rest in dockerfile_instructions(DOCKERFILE.read_text()):
        if word == "ARG" and "=" in rest:
            name, _, default = rest.partition("=")
            args[name] = default
        elif word == "FROM":
            base = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), ""), rest.split()[0])
            image = Dockerfile(bases=[*image.bases, base])
        elif word == "ENV":
            image.env.update(item.partition("=")[::2] for item in shlex.split(rest))
        elif word == "EXPOSE":
            image.expose |= {int(port.split("/")[0]) for port in rest.split()}
        elif word in ("ENTRYPOINT", "CMD"):
            setattr(image, word.lower(), exec_form(word, rest))
        elif word == "HEALTHCHECK":
            command = rest.partition("CMD ")[2]
            image.healthcheck = exec_form(word, command) if command else []
        elif word == "USER":
            image.user = rest
        elif word in ("COPY", "ADD"):
            image.copies.append(rest)
    return image


# ---- Runs: containers of this repository's image ----------------------------------------


@dataclass
class Run:
    """One container of the paradoxplex image, as its platform would start it."""

    where: str
    argv: list[str]  # after the ``paradoxplex`` executable
    env: dict[str, str]
    toml: Obj | None = None
    problems: list[str] = field(default_factory=list)  # references that did not resolve

    @property
    def command(self) -> str:
        return self.argv[0] if self.argv else ""

    def parse(self) -> argparse.Namespace:
        return cli.build_parser().parse_args(self.argv)

    def config(self) -> NodeConfig:
        """The node's settings as ``paradoxplex node`` loads them: flag > env > TOML."""
        return load_config(vars(self.parse()), self.env, self.toml)

    def ports(self) -> set[int]:
        """The TCP ports this container listens on."""
        if self.command == "node":
            config = config_of(self)
            return {config.listen.port, config.admin.port}
        if self.command == "upstream-echo":
            return {parse_address("--listen", self.parse().listen).port}
        return set()


def assemble_argv(entrypoint: list[str] | None, command: list[str] | None) -> list[str] | None:
    """The argv after ``paradoxplex``, or None when the container runs something else.

    Docker and Kubernetes agree: overriding the entrypoint drops the image's CMD.
    """
    image = dockerfile()
    if entrypoint is None:
        argv = [*image.entrypoint, *(image.cmd if command is None else command)]
    else:
        argv = [*entrypoint, *(command or [])]
    if not argv or Path(argv[0]).name != "paradoxplex":
        return None
    return argv[1:]


def config_of(run: Run) -> NodeConfig:
    try:
        return run.config()
    except (ConfigError, SystemExit) as error:
        pytest.fail(f"{run.where}: {error}")


# ---- docker-compose.yml -----------------------------------------------------------------


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


# ---- deploy/: a small kustomize ---------------------------------------------------------


def yaml_documents(path: Path) -> list[Obj]:
    try:
        documents = list(yaml.safe_load_all(path.read_text()))
    except yaml.YAMLError as error:
        pytest.fail(f"{rel(path)}: not valid YAML: {error}")
    for document in documents:
        assert document is None or isinstance(document, dict), f"{rel(path)}: not a mapping"
    return [document for document in documents if document]


def kustomizations() -> list[Path]:
    return sorted(DEPLOY.rglob("kustomization.yaml"))


def deploy_files() -> list[Path]:
    return sorted(path for path in DEPLOY.rglob("*") if path.suffix in (".yaml", ".yml", ".toml"))


def ident(resource: Obj) -> str:
    return f"{resource.get('kind')}/{resource.get('metadata', {}).get('name')}"


def entries(kustomization: Path, key: str) -> list[Any]:
    value = yaml_documents(kustomization)[0].get(key) or []
    assert isinstance(value, list), f"{rel(kustomization)}: {key} is not a list"
    return value


def kustomization_files(kustomization: Path) -> list[tuple[str, Path]]:
    """(what, path) for every file or folder a kustomization.yaml names."""
    here = kustomization.parent
    named = [("resource", here / entry) for entry in entries(kustomization, "resources")]
    named += [("patch", here / e["path"]) for e in entries(kustomization, "patches") if "path" in e]
    for generator in entries(kustomization, "configMapGenerator"):
        for file_entry in generator.get("files", []):
            named.append(("configMapGenerator file", here / str(file_entry).split("=")[-1]))
    return named


def merge(base: Any, patch: Any) -> Any:
    """Strategic merge as far as deploy/ uses it: maps merge, null deletes, lists of named
    maps (containers, env, ports, volumes) merge by name with the patched items first, as
    kustomize orders them; other lists are replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = merge(base.get(key), value)
        return merged
    named = isinstance(base, list) and isinstance(patch, list)
    if named and all(isinstance(item, dict) and "name" in item for item in base + patch):
        by_name = {item["name"]: item for item in base}
        patched = [merge(by_name.get(item["name"]), item) for item in patch]
        names = {item["name"] for item in patch}
        return patched + [item for item in base if item["name"] not in names]
    return patch


@dataclass
class Rendering:
    """What one kustomization.yaml renders, each resource with the file it came from."""

    root: Path
    resources: list[tuple[Path, Obj]] = field(default_factory=list)
    images: dict[str, str] = field(default_factory=dict)  # name in manifests → final ref

    def of_kind(self, kind: str) -> list[tuple[Path, Obj]]:
        return [(path, obj) for path, obj in self.resources if obj.get("kind") == kind]

    def find(self, kind: str, name: str) -> Obj | None:
        found = [obj for _, obj in self.of_kind(kind) if obj["metadata"].get("name") == name]
        return found[0] if found else None

    def data(self, kind: str, name: str) -> dict[str, str]:
        """A ConfigMap's or Secret's data as text (Secret ``data`` is base64)."""
        obj = self.find(kind, name) or {}
        data = {key: str(value) for key, value in (obj.get("data") or {}).items()}
        if kind == "Secret":
            data = {key: base64.b64decode(value).decode() for key, value in data.items()}
        return data | (obj.get("stringData") or {})

    def workloads(self) -> list[tuple[Path, Obj]]:
        return [(path, obj) for path, obj in self.resources if obj.get("kind") in WORKLOADS]


@cache
def render(directory: Path) -> Rendering:
    kustomization = directory / "kustomization.yaml"
    unknown = set(yaml_documents(kustomization)[0]) - KUSTOMIZATION_KEYS
    assert not unknown, f"{rel(kustomization)}: this test's renderer does not know {unknown}"
    rendering = Rendering(directory)
    for entry in entries(kustomization, "resources"):
        target = (directory / entry).resolve()
        if not target.exists():
            pytest.fail(f"{rel(kustomization)}: resource {entry} does not exist")
        if target.is_dir():
            inner = render(target)
            rendering.resources += copy.deepcopy(inner.resources)
            rendering.images.update(inner.images)
        else:
            rendering.resources += [(target, obj) for obj in yaml_documents(target)]
    for generator in entries(kustomization, "configMapGenerator"):
        data = {}
        for file_entry in generator.get("files", []):
            key, _, name = str(file_entry).rpartition("=")
            data[key or Path(name).name] = (directory / name).read_text()
        configmap = {"kind": "ConfigMap", "metadata": {"name": generator["name"]}, "data": data}
        rendering.resources.append((kustomization, configmap))
    for entry in entries(kustomization, "patches"):
        assert "target" not in entry, f"{rel(kustomization)}: the renderer knows no patch targets"
        assert "path" in entry, f"{rel(kustomization)}: the renderer knows patch files only"
        for patch in yaml_documents(directory / entry["path"]):
            apply_patch(rendering, directory / entry["path"], patch)
    for image in entries(kustomization, "images"):
        old = rendering.images.get(image["name"], image["name"])
        name, _, tag = old.partition(":")
        new_tag = str(image.get("newTag", tag))
        rendering.images[image["name"]] = image.get("newName", name) + (
            f":{new_tag}" * bool(new_tag)
        )
    for label in entries(kustomization, "labels"):
        for _, obj in rendering.resources:
            obj.setdefault("metadata", {}).setdefault("labels", {}).update(label.get("pairs", {}))
    return rendering


def apply_patch(rendering: Rendering, path: Path, patch: Obj) -> None:
    for index, (source, obj) in enumerate(rendering.resources):
        if ident(obj) == ident(patch):
            if patch.get("$patch") == "delete":
                del rendering.resources[index]
            else:
                rendering.resources[index] = (source, merge(obj, patch))
            return
    pytest.fail(f"{rel(path)}: patches {ident(patch)}, which the resources do not hold")


def renderings() -> list[Rendering]:
    return [render(path.parent.resolve()) for path in kustomizations()]


def pod_spec(workload: Obj) -> Obj:
    spec: Obj = workload.get("spec", {}).get("template", {}).get("spec", {})
    return spec


def pod_labels(workload: Obj) -> dict[str, str]:
    template: Obj = workload.get("spec", {}).get("template", {})
    labels: dict[str, str] = template.get("metadata", {}).get("labels", {})
    return labels


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


def container_port(container: Obj, port: Any) -> int | None:
    """A probe's or Service's port (number or name) as the container's port number."""
    if isinstance(port, int):
        return port
    named = [p["containerPort"] for p in container.get("ports", []) if p.get("name") == port]
    return int(named[0]) if named else None


def value_from(rendering: Rendering, where: str, source: Obj, problems: list[str]) -> str:
    """An env ``valueFrom``, as the kubelet would fill it in."""
    if "fieldRef" in source:
        return POD_NAME if source["fieldRef"].get("fieldPath") == "metadata.name" else "field"
    for kind, key in (("Secret", "secretKeyRef"), ("ConfigMap", "configMapKeyRef")):
        if key in source:
            ref = source[key]
            value = rendering.data(kind, ref.get("name", "")).get(ref.get("key", ""))
            if value is None and not ref.get("optional"):
                problems.append(f"{where}: {kind} {ref.get('name')} has no key {ref.get('key')}")
            return value or ""
    return "1"  # resourceFieldRef


def k8s_env(
    rendering: Rendering, where: str, container: Obj, problems: list[str]
) -> dict[str, str]:
    env = dict(dockerfile().env)
    for source in container.get("envFrom", []):
        for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
            if key in source:
                env.update(rendering.data(kind, source[key].get("name", "")))
    for item in container.get("env", []):
        raw = str(item.get("value", ""))
        if "valueFrom" in item:
            raw = value_from(rendering, f"{where}: {item['name']}", item["valueFrom"], problems)
        env[item["name"]] = expand(raw, dict(env))
    return env


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` references to earlier variables."""
    return K8S_VARIABLE.sub(lambda match: env.get(match.group(1), match.group(0)), text)


def k8s_toml(
    rendering: Rendering, run: Run, workload: Obj, container: Obj, path: str
) -> Obj | None:
    """The TOML file at ``path`` inside the container, from a mounted ConfigMap or Secret."""
    volumes = {volume["name"]: volume for volume in pod_spec(workload).get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        if not Path(path).is_relative_to(mount["mountPath"]):
            continue
        volume = volumes.get(mount["name"], {})
        inside = str(Path(path).relative_to(mount["mountPath"]))
        for kind, key, name_key in (
            ("ConfigMap", "configMap", "name"),
            ("Secret", "secret", "secretName"),
        ):
            if key in volume:
                name = volume[key].get(name_key, "")
                items = {item["path"]: item["key"] for item in volume[key].get("items", [])}
                text = rendering.data(kind, name).get(items.get(inside, inside))
                if text is None:
                    run.problems.append(f"{run.where}: {path}: {kind} {name} has no {inside}")
                    return None
                return toml_text(f"{run.where}: {kind} {name} key {inside}", text)
    run.problems.append(f"{run.where}: {CONFIG_ENV}={path} is in no mounted ConfigMap or Secret")
    return None


@dataclass
class K8sRun:
    run: Run
    container: Obj
    workload: Obj


def k8s_runs(rendering: Rendering) -> list[K8sRun]:
    """Every container of this repository's image in a rendering."""
    found = []
    for path, workload in rendering.workloads():
        for container in pod_spec(workload).get("containers", []):
            if image_repository(container.get("image", "")) != IMAGE_NAME:
                continue
            where = f"{rel(path)} [{rel(rendering.root)}] {ident(workload)} {container['name']}"
            argv = assemble_argv(container.get("command"), container.get("args"))
            assert argv is not None, f"{where}: does not run paradoxplex"
            run = Run(where, argv, {})
            run.env = k8s_env(rendering, where, container, run.problems)
            if run.env.get(CONFIG_ENV):
                run.toml = k8s_toml(rendering, run, workload, container, run.env[CONFIG_ENV])
            found.append(K8sRun(run, container, workload))
    return found


def k8s_nodes(rendering: Rendering) -> list[K8sRun]:
    return [found for found in k8s_runs(rendering) if found.run.command == "node"]


def all_runs() -> list[Run]:
    runs = list(compose_runs().values())
    return runs + [found.run for rendering in renderings() for found in k8s_runs(rendering)]


# ---- routes -----------------------------------------------------------------------------


def get_route(path: str) -> str | None:
    """The OpenAPI path template that serves ``GET path``, if any."""
    for template, operations in openapi.document()["paths"].items():
        pattern = re.sub(r"\{[^}]+\}", "[^/]+", template)
        if "get" in operations and re.fullmatch(pattern, path):
            return str(template)
    return None


def runs_paradoxplex(words: list[str]) -> bool:
    """Whether a command line (entrypoint and arguments) starts paradoxplex or a sub-command."""
    parser = cli.build_parser()
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    commands = {name for action in actions for name in action.choices}
    return bool(words) and (Path(words[0]).name == "paradoxplex" or words[0] in commands)


def known_env_names() -> set[str]:
    assert CONFIG_ENV in inspect.getsource(cli.node_config), f"the node ignores {CONFIG_ENV}"
    return {env_name(spec.name) for spec in fields(NodeConfig)} | {CONFIG_ENV, URL_ENV, TOKEN_ENV}


# ---- every platform ---------------------------------------------------------------------


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


# ---- docker-compose.yml -----------------------------------------------------------------


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


# ---- deploy/ ----------------------------------------------------------------------------


def test_every_kustomization_names_existing_files() -> None:
    problems = []
    for kustomization in kustomizations():
        for what, path in kustomization_files(kustomization):
            exists = (path / "kustomization.yaml").is_file() if path.is_dir() else path.is_file()
            if not exists:
                problems.append(f"{rel(kustomization)}: {what} {path.name} does not exist")
    assert_none(problems)


def test_every_deploy_file_parses_and_is_used() -> None:
    used = {path.resolve() for k in kustomizations() for _, path in kustomization_files(k)}
    used |= {path.resolve() for path in kustomizations()}
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
