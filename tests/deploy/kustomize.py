"""deploy/: a small kustomize, rendering each ``kustomization.yaml`` into resources and ``Run``s."""

from __future__ import annotations

import base64
import copy
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from paradoxplex.admin import openapi
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

DEPLOY = ROOT / "deploy"
K8S_DEFAULT_TERMINATION_GRACE = 30.0
POD_NAME = "paradoxplex-node-5d8f7b9c4-x2x7q"  # what fieldRef metadata.name stands for here
K8S_VARIABLE = re.compile(r"\$\((\w+)\)")
KUSTOMIZATION_KEYS = {
    "apiVersion",
    "kind",
    "resources",
    "patches",
    "configMapGenerator",
    "images",
    "labels",
    "components",
}
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job")


def yaml_documents(path: Path) -> list[Obj]:
    try:
        documents = list(yaml.safe_load_all(path.read_text()))
    except yaml.YAMLError as error:
        pytest.fail(f"{rel(path)}: not valid YAML: {error}")
    for document in documents:
        assert document is None or isinstance(document, dict), f"{rel(path)}: not a mapping"
    return [document for document in documents if document]


def kind_of(kustomization: Path) -> str:
    return str(yaml_documents(kustomization)[0].get("kind", "Kustomization"))


def kustomizations() -> list[Path]:
    """Every kustomization.yaml that renders on its own (not the ``Component`` ones)."""
    return [path for path in all_kustomizations() if kind_of(path) == "Kustomization"]


def components() -> list[Path]:
    """Every ``kind: Component`` kustomization.yaml (an overlay adds it with ``components:``)."""
    return [path for path in all_kustomizations() if kind_of(path) == "Component"]


def all_kustomizations() -> list[Path]:
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
    named += [("component", here / entry) for entry in entries(kustomization, "components")]
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
    for entry in entries(kustomization, "components"):
        add_component(rendering, kustomization, (directory / entry).resolve())
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


def add_component(rendering: Rendering, user: Path, directory: Path) -> None:
    """A ``kind: Component``: its resources join the rendering, its patches apply to it."""
    component = directory / "kustomization.yaml"
    if not component.is_file() or kind_of(component) != "Component":
        pytest.fail(f"{rel(user)}: component {rel(directory)} is no kind: Component")
    known = {"apiVersion", "kind", "resources", "patches"}
    unknown = set(yaml_documents(component)[0]) - known
    assert not unknown, f"{rel(component)}: this test's renderer does not know {unknown}"
    for entry in entries(component, "resources"):
        rendering.resources += [
            (directory / entry, obj) for obj in yaml_documents(directory / entry)
        ]
    for entry in entries(component, "patches"):
        for patch in yaml_documents(directory / entry["path"]):
            apply_patch(rendering, directory / entry["path"], patch)


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


def get_route(path: str) -> str | None:
    """The OpenAPI path template that serves ``GET path``, if any."""
    for template, operations in openapi.document()["paths"].items():
        pattern = re.sub(r"\{[^}]+\}", "[^/]+", template)
        if "get" in operations and re.fullmatch(pattern, path):
            return str(template)
    return None
