"""No test reaches for a private name of paradoxplex: tests go through the public API.

Read from the source with ``ast``. A test module may not import ``_name`` from paradoxplex,
import a private module of it, or read ``x._name`` off anything it imported from paradoxplex
(a module, a class or a function). Dunder names (``__version__``, ``__init__``) are public.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
TEST_FILES = sorted(path for path in TESTS.rglob("*.py") if "__pycache__" not in path.parts)


def private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def ours(module: str | None) -> bool:
    return module is not None and module.split(".")[0] == "paradoxplex"


def private_uses(source: str, filename: str) -> list[str]:
    """Each private paradoxplex name the source imports or reads, as ``file:line what``."""
    tree = ast.parse(source, filename)
    imported: set[str] = set()
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if not ours(alias.name):
                    continue
                imported.add(alias.asname or alias.name.split(".")[0])
                if any(private(part) for part in alias.name.split(".")):
                    found.append(f"{filename}:{node.lineno} imports {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and ours(node.module):
            assert node.module is not None
            for alias in node.names:
                imported.add(alias.asname or alias.name)
                dotted = f"{node.module}.{alias.name}"
                if any(private(part) for part in dotted.split(".")):
                    found.append(f"{filename}:{node.lineno} imports {dotted}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and private(node.attr):
            base = node.value
            while isinstance(base, ast.Attribute):
                base = base.value
            if isinstance(base, ast.Name) and base.id in imported:
                found.append(f"{filename}:{node.lineno} reads {ast.unparse(node)}")
    return found


@pytest.mark.parametrize("path", TEST_FILES, ids=lambda path: str(path.relative_to(TESTS)))
def test_no_private_names(path: Path) -> None:
    assert private_uses(path.read_text(encoding="utf-8"), path.name) == []


@pytest.mark.parametrize(
    "source",
    [
        "from paradoxplex.node.delivery.courier import MAX_BATCH, _take",
        "from paradoxplex.node.delivery.courier import _take as take",
        "from paradoxplex.node._private import thing",
        "import paradoxplex.node._private",
        "from paradoxplex.node import courier\ncourier._take([])",
        "import paradoxplex.node.delivery.courier\nparadoxplex.node.delivery.courier._take([])",
        "import paradoxplex.node.delivery.courier as c\nc._take([])",
        "from paradoxplex.node.node import Node\nNode._spawn",
    ],
)
def test_checker_catches(source: str) -> None:
    assert private_uses(source, "test_x.py") != []


@pytest.mark.parametrize(
    "source",
    [
        "from paradoxplex.node.delivery.courier import take_batch",
        "from paradoxplex import __name__ as name",
        "import paradoxplex.node.delivery.courier\nparadoxplex.node.delivery.courier.__name__",
        "import argparse\nargparse._SubParsersAction",
        "class Fake:\n    def f(self):\n        return self._x",
    ],
)
def test_checker_allows(source: str) -> None:
    assert private_uses(source, "test_x.py") == []
