"""The start-up probe tries every command the fleet state and the bus send (read from their
source, so a new command without a probe row fails here)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from paradoxplex.node.fleet.redis.preflight import commands, scratch_keys

REDIS = Path(__file__).resolve().parents[2] / "node" / "paradoxplex" / "node" / "fleet" / "redis"
USERS = ("state.py", "inbox.py", "outbox.py")

#: redis-py client methods that are no command, or another command's name.
NOT_COMMANDS = {"execute", "aclose", "close", "connect", "disconnect", "read_response"}
RENAMED = {"delete": "DEL", "register_script": "EVALSHA", "pipeline": "MULTI"}
RECEIVERS = {"_redis", "pipe", "redis"}
IN_SCRIPTS = re.compile(r"redis\.call\('(\w+)'")


def used_commands(source: str) -> set[str]:
    """Commands sent as ``<receiver>.<method>(…)``, ``send_command("X", …)`` or in a Lua script."""
    found = {name.upper() for name in IN_SCRIPTS.findall(source)}
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        method, receiver = node.func.attr, node.func.value
        named = [arg.value for arg in node.args if isinstance(arg, ast.Constant)]
        if method in ("send_command", "execute_command", "_call") and named:
            found.add(str(named[0]).upper())
        elif method in NOT_COMMANDS:
            continue
        elif (isinstance(receiver, ast.Attribute) and receiver.attr in RECEIVERS) or (
            isinstance(receiver, ast.Name) and receiver.id in RECEIVERS
        ):
            found.add(RENAMED.get(method, method.upper()))
    return found


PROBED = {check.command for check in commands("pp:probe:n")}
PROBED |= {"MULTI"}  # a transaction


@pytest.mark.parametrize("module", USERS)
def test_the_probe_tries_every_command_a_module_sends(module: str) -> None:
    used = used_commands((REDIS / module).read_text())
    assert used, f"read no command from {module}: has the scanner gone blind?"
    assert used - PROBED == set()


def test_the_probe_tries_stream_commands_for_the_bus() -> None:
    assert {"XADD", "XREAD", "XRANGE", "XLEN", "XTRIM"} <= PROBED


def test_the_first_write_comes_first() -> None:
    """A read-only replica and an ACL without the prefix are told at the first write."""
    first, second = commands("pp:probe:n")[:2]
    assert first.command == "PING"
    assert (second.command, second.verb) == ("SET", "write")


def test_every_scratch_key_is_under_the_prefix_and_deleted_at_the_end() -> None:
    checks = commands("pp:probe:n")
    touched = {arg for check in checks for arg in check.args if arg.startswith("pp:probe:")}
    assert touched == set(scratch_keys("pp:probe:n"))
    assert checks[-1].args == ("DEL", *scratch_keys("pp:probe:n"))
