"""The error tree: the tree drawn in ``errors.py``'s docstring is the real class hierarchy,
with the fields drawn; messages are one line built from those fields, never from payloads."""

from __future__ import annotations

import inspect
import re

import pytest

from paradoxplex.shared import errors

Tree = dict[str, tuple[str | None, tuple[str, ...]]]  # class: (parent, fields)
# One drawn line: the box-drawing prefix, a class name, its fields in brackets, a comment.
DRAWN = re.compile(r"^(?P<prefix>[ │├└─]*)(?P<name>[A-Z]\w*)(?:\((?P<fields>[^)]*)\))?")


def drawn_tree(doc: str) -> Tree:
    """``{class: (parent, fields)}`` from a docstring tree drawn with ``├─ └─ │``."""
    tree: Tree = {}
    stack: list[tuple[int, str]] = []  # (column of the name, name), outermost first
    for line in doc.splitlines():
        match = DRAWN.match(line)
        if match is None or (stack and not match["prefix"].strip()):
            continue  # not a class, or text below the root that is not a branch
        column = match.start("name")
        while stack and stack[-1][0] >= column:
            stack.pop()
        drawn_fields = tuple(field.strip() for field in (match["fields"] or "").split(",") if field)
        tree[match["name"]] = (stack[-1][1] if stack else None, drawn_fields)
        stack.append((column, match["name"]))
    return tree


def tree_part(doc: str) -> str:
    """The drawn tree: the indented block after the summary line."""
    return doc.split("\n\n")[1]


ERRORS = {
    name: cls
    for name, cls in vars(errors).items()
    if isinstance(cls, type) and issubclass(cls, Exception) and cls.__module__ == errors.__name__
}
assert errors.__doc__ is not None
TREE = drawn_tree(tree_part(errors.__doc__))


# The errors with fields: those with an ``__init__`` of their own.
WITH_FIELDS = sorted(name for name, cls in ERRORS.items() if "__init__" in vars(cls))


def parameters(cls: type[Exception]) -> list[inspect.Parameter]:
    """The parameters of the class's own ``__init__`` (none when it has no fields)."""
    if "__init__" not in vars(cls):
        return []
    return list(inspect.signature(cls).parameters.values())


def own_fields(cls: type[Exception]) -> tuple[str, ...]:
    """The fields one must pass: the parameters without a default."""
    return tuple(p.name for p in parameters(cls) if p.default is inspect.Parameter.empty)


def sample_arguments(cls: type[Exception]) -> dict[str, object]:
    """A value easy to spot for every parameter: ``<name>-VALUE``, or 7000x for numbers."""
    return {
        p.name: 70000 + index if p.annotation == "int" else f"{p.name}-VALUE"
        for index, p in enumerate(parameters(cls))
    }


def test_the_drawing_is_read() -> None:
    assert TREE["ParadoxplexError"] == (None, ())
    assert TREE["FrameTooLarge"] == ("FramingError", ("size", "limit"))
    assert TREE["OwnerTimeout"] == ("FleetError", ("client_uuid", "node"))


def test_every_error_is_drawn_and_every_drawing_is_an_error() -> None:
    assert set(TREE) == set(ERRORS)


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_the_parent_is_the_one_drawn(name: str) -> None:
    parent, _ = TREE[name]
    [base] = ERRORS[name].__bases__
    assert base is (Exception if parent is None else ERRORS[parent])


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_the_fields_are_the_ones_drawn(name: str) -> None:
    _, drawn_fields = TREE[name]
    assert own_fields(ERRORS[name]) == drawn_fields


@pytest.mark.parametrize("name", WITH_FIELDS)
def test_the_message_is_one_line_built_from_the_fields(name: str) -> None:
    arguments = sample_arguments(ERRORS[name])
    error = ERRORS[name](**arguments)
    assert "\n" not in str(error)
    for field, value in arguments.items():
        assert getattr(error, field) == value
        assert str(value) in str(error)


@pytest.mark.parametrize("name", WITH_FIELDS)
def test_no_error_takes_payload_bytes(name: str) -> None:
    """An error cannot carry what the peer sent, so no message can echo it."""
    annotations = {p.name: str(p.annotation) for p in parameters(ERRORS[name])}
    assert [field for field, annotation in annotations.items() if "bytes" in annotation] == []
    assert {"payload", "data", "frame", "body"}.isdisjoint(annotations)


def test_frame_too_large_names_sizes_not_bytes() -> None:
    assert str(errors.FrameTooLarge(70001, 65536)) == (
        "frame of 70001 bytes exceeds the limit of 65536 bytes"
    )


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ("A\n└─ B(x)", {"A": (None, ()), "B": ("A", ("x",))}),
        (
            "A\n├─ B\n│  └─ C(x, y)   a comment\n└─ D",
            {"A": (None, ()), "B": ("A", ()), "C": ("B", ("x", "y")), "D": ("A", ())},
        ),
        (
            "A\n├─ B\n│  ├─ C\n│  └─ D\n└─ E",
            {"A": (None, ()), "B": ("A", ()), "C": ("B", ()), "D": ("B", ()), "E": ("A", ())},
        ),
    ],
)
def test_drawn_tree_reader(doc: str, expected: Tree) -> None:
    assert drawn_tree(doc) == expected


@pytest.mark.parametrize(
    "error",
    [errors.FleetUnavailable("redis: refused"), errors.OwnerTimeout("u-1", "node-b")],
    ids=lambda error: type(error).__name__,
)
def test_a_fleet_error_says_unknown_until_known_not_applied(error: errors.FleetError) -> None:
    assert error.outcome is errors.Outcome.UNKNOWN
    known = error.not_applied()
    assert type(known) is type(error)
    assert (known.outcome, str(known)) == (errors.Outcome.NOT_APPLIED, str(error))
    assert {k: v for k, v in vars(known).items() if k != "outcome"} == {
        k: v for k, v in vars(error).items() if k != "outcome"
    }
    assert error.outcome is errors.Outcome.UNKNOWN, "the original is unchanged"
