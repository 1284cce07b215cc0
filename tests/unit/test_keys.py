"""Every Redis key and channel name comes from one ``Keys(prefix)``."""

from __future__ import annotations

import pytest

from paradoxplex.shared.keys import Keys

# (attribute, its id argument or None for a property, the name under prefix "px")
NAMES: list[tuple[str, str | None, str]] = [
    ("node", "n1", "px:node:n1"),
    ("node_alive", "n1", "px:alive:n1"),
    ("nodes", None, "px:nodes"),
    ("sessions_data", None, "px:session-data"),
    ("node_sessions", "n1", "px:node-sessions:n1"),
    ("upstreams", None, "px:upstreams"),
    ("health", "u:1", "px:health:u:1"),
    ("health_upstreams", None, "px:health-upstreams"),
    ("cleanup", "n1", "px:cleanup:n1"),
    ("probe", "ab12", "px:probe:ab12"),
    ("inbox", "n1", "px:inbox:n1"),
    ("fleet_stream", None, "px:fleet-stream"),
]
IDS = [attribute for attribute, _, _ in NAMES]


def name_of(keys: Keys, attribute: str, argument: str | None) -> str:
    value = getattr(keys, attribute)
    result = value if argument is None else value(argument)
    assert isinstance(result, str)
    return result


def all_names(keys: Keys) -> list[str]:
    return [name_of(keys, attribute, argument) for attribute, argument, _ in NAMES]


def test_the_table_covers_every_name() -> None:
    public = {name for name in dir(Keys) if not name.startswith("_")}
    assert public - {"prefix"} == set(IDS)


@pytest.mark.parametrize(("attribute", "argument", "expected"), NAMES, ids=IDS)
def test_name(attribute: str, argument: str | None, expected: str) -> None:
    assert name_of(Keys("px"), attribute, argument) == expected


@pytest.mark.parametrize(("attribute", "argument", "expected"), NAMES, ids=IDS)
def test_default_prefix(attribute: str, argument: str | None, expected: str) -> None:
    assert name_of(Keys(), attribute, argument) == "paradoxplex" + expected.removeprefix("px")


@pytest.mark.parametrize("prefix", ["a", "fleet-2", "tenant:blue"])
def test_every_name_is_under_the_prefix(prefix: str) -> None:
    assert all(name.startswith(prefix + ":") for name in all_names(Keys(prefix)))


def test_names_are_distinct_for_one_id() -> None:
    names = all_names(Keys("px"))
    assert len(set(names)) == len(names)


def test_two_prefixes_share_no_name() -> None:
    assert not set(all_names(Keys("one"))) & set(all_names(Keys("two")))


@pytest.mark.parametrize(
    "attribute", [attribute for attribute, argument, _ in NAMES if argument is not None]
)
def test_per_id_names_differ_per_id(attribute: str) -> None:
    keys = Keys("px")
    assert name_of(keys, attribute, "a") != name_of(keys, attribute, "b")


def test_repr() -> None:
    assert repr(Keys("px")) == "<Keys prefix='px'>"
