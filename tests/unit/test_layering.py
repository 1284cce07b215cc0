"""The decision core does no I/O, imports flow one way (node → admin → shared → wire), the
upstream SDK does not need the node, and no modules import each other in a circle.

Read from the source with ``ast`` (nothing is imported), so an import inside a function or
under ``if TYPE_CHECKING:`` counts like any other. The one allowed exception: ``config.py``
may call ``socket.gethostname()`` for the default node id.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "shared" / "paradoxplex" / "shared"

# Module roots no core module may import.
FORBIDDEN_MODULES = {
    "aiohttp": "an HTTP framework",
    "grpc": "gRPC",
    "redis": "Redis",
    "selectors": "socket polling",
    "socket": "sockets",
    "socketserver": "socket servers",
    "ssl": "TLS sockets",
    "time": "the clock",
}
# Names no core module may touch, whatever object they hang on (asyncio, a loop, datetime).
FORBIDDEN_NAMES = {
    "start_server": "an asyncio socket server",
    "start_unix_server": "an asyncio socket server",
    "open_connection": "an asyncio socket",
    "open_unix_connection": "an asyncio socket",
    "create_server": "an asyncio socket server",
    "create_connection": "an asyncio socket",
    "create_datagram_endpoint": "an asyncio socket",
    "sock_accept": "an asyncio socket",
    "sock_connect": "an asyncio socket",
    "sock_recv": "an asyncio socket",
    "sock_sendall": "an asyncio socket",
    "monotonic": "the clock",
    "monotonic_ns": "the clock",
    "perf_counter": "the clock",
    "time_ns": "the clock",
    "now": "the clock",
    "utcnow": "the clock",
    "today": "the clock",
    "sleep": "a timer",
    "call_later": "a timer",
    "call_at": "a timer",
}
# The one exception, by file: config.py reads the host name for the default node id.
ALLOWED = {"config.py": {"socket.gethostname"}}

# Who may import whom: a module may import paradoxplex.X only from its own layer or below.
LAYERS = {"wire": 0, "shared": 1, "admin": 2, "node": 3}
ROOT_LAYERS = {"shared": 1, "admin": 2, "node": 3}
# Packages that must not import another of ours, whatever the layers allow.
FORBIDDEN_EDGES = {
    "paradoxplex.upstream": {"paradoxplex.node": "the upstream SDK is used without the node"},
}


def core_violations(source: str, filename: str) -> list[str]:
    """Each forbidden import or use in one core module, as ``file:line what``."""
    allowed = ALLOWED.get(filename, set())
    allowed_modules = {name.split(".")[0] for name in allowed}
    found: list[str] = []

    def report(node: ast.AST, what: str) -> None:
        found.append(f"{filename}:{getattr(node, 'lineno', 0)} {what}")

    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                root = alias.name.split(".")[0]
                if root in FORBIDDEN_MODULES and root not in allowed_modules:
                    report(node, f"imports {alias.name} ({FORBIDDEN_MODULES[root]})")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            root = node.module.split(".")[0]
            for alias in node.names:
                dotted = f"{node.module}.{alias.name}"
                if root in FORBIDDEN_MODULES and dotted not in allowed:
                    report(node, f"imports {dotted} ({FORBIDDEN_MODULES[root]})")
                elif alias.name in FORBIDDEN_NAMES:
                    report(node, f"imports {dotted} ({FORBIDDEN_NAMES[alias.name]})")
        elif isinstance(node, ast.Attribute):
            owner = node.value.id if isinstance(node.value, ast.Name) else None
            dotted = f"{owner}.{node.attr}"
            if owner in FORBIDDEN_MODULES and dotted not in allowed:
                report(node, f"uses {dotted} ({FORBIDDEN_MODULES[owner]})")
            elif node.attr in FORBIDDEN_NAMES:
                report(node, f"uses .{node.attr} ({FORBIDDEN_NAMES[node.attr]})")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "time"
            and not node.args
            and not node.keywords
        ):
            report(node, "calls .time() (the clock)")
    return found


def module_name(path: Path) -> tuple[str, bool]:
    """``paradoxplex.x.y`` for a file under one of the three roots, and whether a package."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts[1:])
    is_package = parts[-1] == "__init__"
    if is_package:
        parts.pop()
    return ".".join(parts), is_package


def imported_modules(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """Every module an import names, with relative imports resolved."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            stem = ".".join([*base, *([node.module] if node.module else [])])
            found.append((node.lineno, stem))
            found.extend((node.lineno, f"{stem}.{alias.name}") for alias in node.names)
    return found


def layer_of(module: str, path: Path | None = None) -> int | None:
    parts = module.split(".")
    if parts[0] != "paradoxplex" or len(parts) < 2:
        return None
    if parts[1] in LAYERS:
        return LAYERS[parts[1]]
    if path is not None:  # a package of ours outside the four, e.g. an example upstream
        return ROOT_LAYERS[path.relative_to(ROOT).parts[0]]
    for root, layer in ROOT_LAYERS.items():
        if (ROOT / root / "paradoxplex" / parts[1]).exists():
            return layer
    return None


def flow_violations(source: str, module: str, is_package: bool, layer: int) -> list[str]:
    found: list[str] = []
    for line, target in imported_modules(source, module, is_package):
        target_layer = layer_of(target)
        if target_layer is not None and target_layer > layer:
            found.append(f"{module}:{line} imports {target}")
    return found


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(f"{package}.")


def edge_violations(source: str, module: str, is_package: bool) -> list[str]:
    """Each import that ``FORBIDDEN_EDGES`` rules out for ``module``."""
    rules = [
        (target_package, why)
        for package, forbidden in FORBIDDEN_EDGES.items()
        if within(module, package)
        for target_package, why in forbidden.items()
    ]
    return [
        f"{module}:{line} imports {target} ({why})"
        for line, target in imported_modules(source, module, is_package)
        for target_package, why in rules
        if within(target, target_package)
    ]


Graph = dict[str, set[str]]


def import_graph(sources: dict[str, tuple[str, bool]]) -> Graph:
    """Module → the modules of ``sources`` it imports, from ``{module: (source, is_package)}``."""
    return {
        module: {
            target
            for _, target in imported_modules(source, module, is_package)
            if target in sources and target != module
        }
        for module, (source, is_package) in sources.items()
    }


def circles(graph: Graph, *, limit: int = 100) -> set[tuple[str, ...]]:
    """Every elementary import circle, each as a tuple from its smallest module on.

    A circle is found once, from its smallest module, by walking only through larger ones.
    At most ``limit`` are listed (a tangle that large needs no exhaustive list).
    """
    found: set[tuple[str, ...]] = set()
    for start in sorted(graph):
        stack = [(start, [start])]
        while stack and len(found) < limit:
            module, path = stack.pop()
            for target in sorted(graph.get(module, ())):
                if target == start:
                    found.add(tuple(path))
                elif target > start and target not in path:
                    stack.append((target, [*path, target]))
    return found


def drawn(circle: tuple[str, ...]) -> str:
    return " → ".join([*circle, circle[0]])


CORE_FILES = sorted(CORE.glob("*.py"))
ALL_FILES = sorted(
    path
    for root in ROOT_LAYERS
    for path in (ROOT / root / "paradoxplex").rglob("*.py")
    if "__pycache__" not in path.parts
)


def test_entry_rules_catch_a_node_part_that_starts_the_command_line() -> None:
    graph = {
        "paradoxplex.node.links.link": {"paradoxplex.node.cli.checks"},
        "paradoxplex.node.cli.main": {"paradoxplex.node.cli.checks"},
        "paradoxplex.node.node": {"paradoxplex.node.fleet.redis.state"},
        "paradoxplex.node.fleet.backends": {"paradoxplex.node.fleet.redis"},
    }
    assert entry_violations(graph) == [
        "paradoxplex.node.links.link imports paradoxplex.node.cli.checks "
        "(the command line sits on top; nothing below starts it)",
        "paradoxplex.node.node imports paradoxplex.node.fleet.redis.state "
        "(the backend is chosen in one place (fleet/backends.py))",
    ]


def test_the_core_is_where_we_look() -> None:
    names = {path.name for path in CORE_FILES}
    assert {"framing.py", "balancing.py", "routing.py", "config.py", "fleet.py"} <= names


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda path: path.name)
def test_core_module_does_no_io(path: Path) -> None:
    assert core_violations(path.read_text(encoding="utf-8"), path.name) == []


def test_the_one_exception_is_still_needed() -> None:
    """If config.py stops calling socket.gethostname, drop the exception from ALLOWED."""
    tree = ast.parse((CORE / "config.py").read_text(encoding="utf-8"))
    uses = {
        f"{node.value.id}.{node.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
    }
    assert ALLOWED["config.py"] <= uses


@pytest.mark.parametrize(
    "path", ALL_FILES, ids=lambda path: str(path.relative_to(ROOT)).removesuffix(".py")
)
def test_imports_flow_node_admin_shared_wire(path: Path) -> None:
    module, is_package = module_name(path)
    layer = layer_of(module, path)
    assert layer is not None
    source = path.read_text(encoding="utf-8")
    assert flow_violations(source, module, is_package, layer) == []


@pytest.mark.parametrize(
    "path", ALL_FILES, ids=lambda path: str(path.relative_to(ROOT)).removesuffix(".py")
)
def test_forbidden_edges(path: Path) -> None:
    module, is_package = module_name(path)
    assert edge_violations(path.read_text(encoding="utf-8"), module, is_package) == []


def test_the_upstream_sdk_is_where_we_look() -> None:
    assert "paradoxplex.upstream.server" in {module_name(path)[0] for path in ALL_FILES}


def our_import_graph() -> Graph:
    sources = {}
    for path in ALL_FILES:
        module, is_package = module_name(path)
        sources[module] = (path.read_text(encoding="utf-8"), is_package)
    return import_graph(sources)


def test_no_import_circles() -> None:
    """Imports inside functions and under TYPE_CHECKING count: dodging a circle is a circle."""
    found = circles(our_import_graph())
    assert not found, "import circles:\n" + "\n".join(sorted(map(drawn, found)))


# Inside the node: who may import a package of it from outside that package.
INNER_ENTRIES = {
    "paradoxplex.node.cli": (set(), "the command line sits on top; nothing below starts it"),
    "paradoxplex.node.fleet.redis": (
        {"paradoxplex.node.fleet.backends"},
        "the backend is chosen in one place (fleet/backends.py)",
    ),
}


def entry_violations(graph: Graph) -> list[str]:
    """Each import of an ``INNER_ENTRIES`` package from outside it by a module not allowed."""
    return [
        f"{module} imports {target} ({why})"
        for module, targets in sorted(graph.items())
        for target in sorted(targets)
        for package, (allowed, why) in INNER_ENTRIES.items()
        if within(target, package) and not within(module, package) and module not in allowed
    ]


def test_the_node_packages_are_entered_only_where_they_should_be() -> None:
    assert entry_violations(our_import_graph()) == []


def test_the_node_package_is_its_folders() -> None:
    """At most 12 modules at the top of the node package; the rest live in a folder by job."""
    top = ROOT / "node" / "paradoxplex" / "node"
    modules = sorted(p.name for p in top.glob("*.py") if p.name != "__init__.py")
    assert len(modules) <= 12, modules
    assert {"sockets", "links", "delivery", "fleet", "cli"} <= {
        p.name for p in top.iterdir() if (p / "__init__.py").exists()
    }


# --- the checkers catch what they should ----------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "import grpc",
        "import grpc.aio as aio",
        "from grpc import aio",
        "import redis.asyncio",
        "from redis.asyncio import Redis",
        "from aiohttp import web",
        "import time",
        "from time import monotonic",
        "import socket",
        "import socket\nsocket.gethostname()",
        "import ssl",
        "import asyncio\nasyncio.start_server(handler)",
        "from asyncio import open_connection",
        "loop.create_server(factory)",
        "loop.sock_recv(sock, 10)",
        "datetime.now()",
        "import datetime\ndatetime.datetime.utcnow()",
        "loop.time()",
        "asyncio.get_running_loop().time()",
        "await asyncio.sleep(1)",
    ],
)
def test_core_checker_catches(source: str) -> None:
    assert core_violations(source, "elsewhere.py") != []


@pytest.mark.parametrize(
    ("source", "filename"),
    [
        ("import uuid\nuuid.uuid4()", "sessions.py"),
        ("message.time = 'now'", "routing.py"),
        ("stamp = message.time", "routing.py"),
        ("def f(*, now: float) -> float:\n    return now", "health.py"),
        ("import socket\nsocket.gethostname()", "config.py"),
        ("from socket import gethostname", "config.py"),
    ],
)
def test_core_checker_allows(source: str, filename: str) -> None:
    assert core_violations(source, filename) == []


def test_the_exception_is_only_gethostname() -> None:
    assert core_violations("import socket\nsocket.socket()", "config.py") != []


@pytest.mark.parametrize(
    ("source", "module", "is_package", "layer"),
    [
        ("from paradoxplex.node import cli", "paradoxplex.shared.x", False, 1),
        ("import paradoxplex.admin.app", "paradoxplex.shared.x", False, 1),
        ("from paradoxplex import node", "paradoxplex.shared.x", False, 1),
        ("from ..node import cli", "paradoxplex.shared.x", False, 1),
        ("from .. import admin", "paradoxplex.shared.x", False, 1),
        ("from ..node.cli import main", "paradoxplex.admin.app", False, 2),
        ("from .. import node", "paradoxplex.admin", True, 2),
        ("from paradoxplex.shared import config", "paradoxplex.wire.x", False, 0),
    ],
)
def test_flow_checker_catches(source: str, module: str, is_package: bool, layer: int) -> None:
    assert flow_violations(source, module, is_package, layer) != []


@pytest.mark.parametrize(
    ("source", "module", "is_package", "layer"),
    [
        ("from paradoxplex.shared import config", "paradoxplex.admin.app", False, 2),
        ("from . import errors", "paradoxplex.shared.x", False, 1),
        ("from .errors import ConfigError", "paradoxplex.shared.x", False, 1),
        ("from paradoxplex.wire import bus_pb2", "paradoxplex.shared.x", False, 1),
        ("from paradoxplex.admin import app", "paradoxplex.node.x", False, 3),
        ("import paradoxplex", "paradoxplex.shared.x", False, 1),
    ],
)
def test_flow_checker_allows(source: str, module: str, is_package: bool, layer: int) -> None:
    assert flow_violations(source, module, is_package, layer) == []


@pytest.mark.parametrize(
    ("source", "module"),
    [
        ("from paradoxplex.node.clock import timestamp", "paradoxplex.upstream.server"),
        ("import paradoxplex.node", "paradoxplex.upstream"),
        ("from paradoxplex import node", "paradoxplex.upstream.server"),
        ("def f():\n    from paradoxplex.node import node", "paradoxplex.upstream.server"),
    ],
)
def test_edge_checker_catches(source: str, module: str) -> None:
    assert edge_violations(source, module, False) != []


@pytest.mark.parametrize(
    ("source", "module"),
    [
        ("from paradoxplex.shared.timestamps import timestamp", "paradoxplex.upstream.server"),
        ("from paradoxplex.wire import upstream_pb2", "paradoxplex.upstream.server"),
        ("from paradoxplex.upstream import UpstreamServer", "paradoxplex.node.cli.echo"),
        ("from paradoxplex.node import cli", "paradoxplex.upstreams"),
    ],
)
def test_edge_checker_allows(source: str, module: str) -> None:
    assert edge_violations(source, module, False) == []


def graph_of(**modules: str) -> Graph:
    """An import graph from sources, one keyword per module ``paradoxplex.m.<name>``."""
    return import_graph(
        {f"paradoxplex.m.{name}": (source, False) for name, source in modules.items()}
    )


@pytest.mark.parametrize(
    ("modules", "expected"),
    [
        ({"a": "from paradoxplex.m import b", "b": "import paradoxplex.m.a"}, {("a", "b")}),
        ({"a": "from . import b", "b": "def f():\n    from .a import x"}, {("a", "b")}),
        (
            {
                "a": "from .b import x",
                "b": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .c import y",
                "c": "from . import a",
            },
            {("a", "b", "c")},
        ),
        (
            {"a": "from . import b, c", "b": "from . import a", "c": "from . import a"},
            {("a", "b"), ("a", "c")},
        ),
        ({"a": "from . import b", "b": "from . import c", "c": "import os"}, set()),
        ({"a": "from .a import x"}, set()),
    ],
)
def test_circles_are_found(modules: dict[str, str], expected: set[tuple[str, ...]]) -> None:
    found = circles(graph_of(**modules))
    assert found == {tuple(f"paradoxplex.m.{name}" for name in circle) for circle in expected}


def test_a_circle_is_drawn_back_to_its_start() -> None:
    assert drawn(("a", "b", "c")) == "a → b → c → a"
