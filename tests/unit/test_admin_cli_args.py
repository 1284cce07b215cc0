"""``paradoxplex admin`` argument parsing and output, without a server."""

from __future__ import annotations

import argparse
import io

import pytest

from paradoxplex.admin.cli import DEFAULT_URL, add_admin_parser, admin_token, admin_url
from paradoxplex.admin.commands import COMMANDS, Output
from paradoxplex.admin.tables import NODE_COLUMNS


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="paradoxplex")
    add_admin_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["admin", *argv])


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PARADOXPLEX_ADMIN_URL", raising=False)
    monkeypatch.delenv("PARADOXPLEX_ADMIN_TOKEN", raising=False)


@pytest.mark.parametrize(
    "argv",
    [
        ["--url", "http://h:1", "--token", "t", "--json", "nodes"],
        ["nodes", "--url", "http://h:1", "--token", "t", "--json"],
        ["--json", "nodes", "--url", "http://h:1", "--token", "t"],
    ],
)
def test_global_options_go_before_or_after(argv: list[str]) -> None:
    args = parse(*argv)
    assert (args.admin_command, args.url, args.token, args.json) == (
        "nodes",
        "http://h:1",
        "t",
        True,
    )


def test_defaults_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    args = parse("nodes")
    assert (admin_url(args), admin_token(args)) == (DEFAULT_URL, None)
    monkeypatch.setenv("PARADOXPLEX_ADMIN_URL", "10.0.0.1:9000")
    monkeypatch.setenv("PARADOXPLEX_ADMIN_TOKEN", "env-token")
    assert (admin_url(args), admin_token(args)) == ("http://10.0.0.1:9000", "env-token")
    flagged = parse("nodes", "--url", "https://admin.example", "--token", "flag-token")
    assert (admin_url(flagged), admin_token(flagged)) == ("https://admin.example", "flag-token")


def test_every_command_parses() -> None:
    uuid = "0f8fad5b-d9cb-469f-a165-70867728950e"
    examples = {
        "nodes": [],
        "sockets": ["--node", "n", "--state", "paused", "--label", "a=b", "--limit", "5", "--all"],
        "socket": [uuid],
        "send": [uuid, "--stdin"],
        "pause": [uuid],
        "resume": [uuid],
        "labels": [uuid, "a=b", "c=d"],
        "close": [uuid],
        "broadcast": ["inactive", "--label", "a=b", "--base64", "AA=="],
        "upstreams": [],
        "upstream-add": ["h:1", "--ready-timeout", "2", "--alive-timeout", "3"],
        "upstream-remove": ["h:1"],
        "upstream-drain": ["h:1"],
        "drain": ["node-b"],
        "health": [],
    }
    assert set(examples) == set(COMMANDS)
    for name, argv in examples.items():
        assert parse(name, *argv).admin_command == name


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["send", "u"],
        ["send", "u", "--text", "a", "--base64", "QQ=="],
        ["broadcast", "some", "--text", "x"],
        ["broadcast", "all", "--stdin"],
        ["sockets", "--state", "closed"],
        ["sockets", "--limit", "many"],
        ["upstream-add", "h:1", "--ready-timeout", "soon"],
    ],
)
def test_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        parse(*argv)
    assert raised.value.code == 2
    capsys.readouterr()


def test_text_output_and_cursor_hint() -> None:
    out, err = io.StringIO(), io.StringIO()
    Output(json=False, out=out, err=err).listing([{"id": "n"}], "c2", NODE_COLUMNS)
    assert out.getvalue().splitlines()[1].split() == ["n"] + ["-"] * (len(NODE_COLUMNS) - 1)
    assert err.getvalue() == "more: pass --cursor c2 (or --all)\n"


def test_json_output_is_one_line() -> None:
    out, err = io.StringIO(), io.StringIO()
    Output(json=True, out=out, err=err).listing([{"id": "n"}], "c2", NODE_COLUMNS)
    assert out.getvalue() == '{"items":[{"id":"n"}],"cursor":"c2"}\n'
    assert err.getvalue() == ""


def test_an_error_is_one_line() -> None:
    err = io.StringIO()
    assert Output(err=err).error("not_found", "no socket x") == 1
    assert err.getvalue() == "error: not_found: no socket x\n"
