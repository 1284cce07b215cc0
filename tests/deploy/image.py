"""The image this repository builds (the ``Dockerfile``) and each container of it (a ``Run``),
with the small helpers every deploy check shares."""

from __future__ import annotations

import argparse
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

from paradoxplex.admin.cli import TOKEN_ENV, URL_ENV
from paradoxplex.node.cli import main as cli
from paradoxplex.shared.config import NodeConfig, env_name, load_config, parse_address
from paradoxplex.shared.errors import ConfigError

Obj = dict[str, Any]

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
IMAGE_NAME = "paradoxplex"  # the repository name manifests give the Dockerfile's image
CONFIG_ENV = "PARADOXPLEX_CONFIG"
# After drain_grace, node.stop() still flushes read data (<= 5 s), closes sockets (<= 2 s) and
# closes upstream links (<= 2 s): the platform's kill timer must leave room for that too.
SHUTDOWN_AFTER_GRACE = 9.0
REDIS_PORT = 6379
URL = re.compile(r"https?://([^/'\"\s]+)(/[^'\"\s?]*)")
URL_AUTHORITY = re.compile(r"^\w+://(?:[^@/]*@)?([^/]*)")


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


# ---- what paradoxplex reads and runs ---------------------------------------------------


def runs_paradoxplex(words: list[str]) -> bool:
    """Whether a command line (entrypoint and arguments) starts paradoxplex or a sub-command."""
    parser = cli.build_parser()
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    commands = {name for action in actions for name in action.choices}
    return bool(words) and (Path(words[0]).name == "paradoxplex" or words[0] in commands)


def known_env_names() -> set[str]:
    assert CONFIG_ENV in inspect.getsource(cli.node_config), f"the node ignores {CONFIG_ENV}"
    return {env_name(spec.name) for spec in fields(NodeConfig)} | {CONFIG_ENV, URL_ENV, TOKEN_ENV}
