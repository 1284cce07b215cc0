"""No test reaches for a private name of paradoxplex: tests go through the public API.

Read from the source with ``ast``. A test module may not import ``_name`` from paradoxplex,
import a private module of it, or read ``x._name`` off anything it imported from paradoxplex
(a module, a class or a function). Nor may it read ``x._name`` off anything else (an instance
of a product class, whatever its variable is called) when ``_name`` is a private name that
node/, shared/ or admin/ define: a method, a class attribute, ``self._name = ...``, a slot or
a module-level name. The one exception is ``self._name`` in a class the test itself defines,
for a name that class defines. Dunder names (``__version__``, ``__init__``) are public.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
TEST_FILES = sorted(path for path in TESTS.rglob("*.py") if "__pycache__" not in path.parts)
PRODUCT = [
    path
    for root in ("node", "shared", "admin")
    for path in sorted((TESTS.parent / root).rglob("*.py"))
    if "wire" not in path.parts  # generated from proto/
]


def private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def ours(module: str | None) -> bool:
    return module is not None and module.split(".")[0] == "paradoxplex"


def defined_names(tree: ast.AST) -> set[str]:
    """The names ``tree`` defines: functions, classes, assigned names, ``self.x = ...``
    attributes and ``__slots__`` entries."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                names.add(node.attr)
        elif isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "__slots__" for target in node.targets
        ):
            names |= {
                slot.value
                for slot in ast.walk(node.value)
                if isinstance(slot, ast.Constant) and isinstance(slot.value, str)
            }
    return names


def product_privates() -> frozenset[str]:
    """Every private name node/, shared/ and admin/ define."""
    names: set[str] = set()
    for path in PRODUCT:
        names |= defined_names(ast.parse(path.read_text(encoding="utf-8"), path.name))
    return frozenset(name for name in names if private(name))


PRODUCT_PRIVATES = product_privates()


def own_names(tree: ast.AST) -> dict[ast.AST, set[str]]:
    """For each ``self.x`` / ``cls.x`` read inside a class the test defines: that class's own
    names (those it defines itself may be private to it)."""
    owned: dict[ast.AST, set[str]] = {}
    for cls in ast.walk(tree):
        if isinstance(cls, ast.ClassDef):
            names = defined_names(cls)
            for node in ast.walk(cls):
                base = node.value if isinstance(node, ast.Attribute) else None
                if isinstance(base, ast.Name) and base.id in ("self", "cls"):
                    owned[node] = names
    return owned


def private_uses(
    source: str, filename: str, product: frozenset[str] = PRODUCT_PRIVATES
) -> list[str]:
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
    owned = own_names(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and private(node.attr):
            base = node.value
            while isinstance(base, ast.Attribute):
                base = base.value
            if isinstance(base, ast.Name) and base.id in imported:
                found.append(f"{filename}:{node.lineno} reads {ast.unparse(node)}")
            elif node.attr in product and node.attr not in owned.get(node, set()):
                found.append(
                    f"{filename}:{node.lineno} reads {ast.unparse(node)} (private in paradoxplex)"
                )
    return found


def test_the_product_privates_are_found() -> None:
    assert {"_ask_first", "_stop", "_redis"} <= PRODUCT_PRIVATES
    assert not any(name.startswith("__") and name.endswith("__") for name in PRODUCT_PRIVATES)


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
        # a private name of the product, read off an instance (of whatever, called anything)
        "from paradoxplex.node.redis.sentinel import FleetSentinel\ns = FleetSentinel([])\n"
        "s._ask_first(s.sentinels[0])",
        "def f(thing):\n    return thing._ask_first",
        "class Fake:\n    def f(self):\n        return self._ask_first(1)",
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
        # a test's own class may use a private name of its own that the product also uses
        "class Fake:\n    def __init__(self):\n        self._ask_first = 1\n"
        "    def f(self):\n        return self._ask_first",
    ],
)
def test_checker_allows(source: str) -> None:
    assert private_uses(source, "test_x.py") == []
