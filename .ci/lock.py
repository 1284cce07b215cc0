"""What uv.lock pins, for the Makefile: the bootstrap line for uv itself, and a check that a
virtual environment holds nothing the lock does not name at that exact version.

    python .ci/lock.py uv-requirement      # "uv==X --hash=sha256:..." for pip --require-hashes
    .venv/bin/python .ci/lock.py check     # exit 1, naming each distribution off the lock

Only the standard library: it runs before anything is installed.
"""

from __future__ import annotations

import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Any

LOCK = Path(__file__).resolve().parents[1] / "uv.lock"
PROJECT = "paradoxplex"


def canonical(name: str) -> str:
    """PEP 503's normalized name: ``Foo_bar.baz`` -> ``foo-bar-baz``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def locked() -> dict[str, dict[str, Any]]:
    """Each package of the lock by canonical name."""
    packages = tomllib.loads(LOCK.read_text())["package"]
    return {canonical(str(p["name"])): p for p in packages}


def uv_requirement() -> str:
    """The lock's uv, with every file's hash (pip picks the wheel of this platform)."""
    uv = locked()["uv"]
    files = [*uv.get("wheels", []), uv["sdist"]]
    hashes = " ".join(f"--hash={f['hash']}" for f in files)
    return f"uv=={uv['version']} {hashes}"


def off_lock() -> list[str]:
    """Each distribution installed here that the lock does not hold at that version."""
    pins = locked()
    problems = []
    for dist in metadata.distributions():
        name = canonical(dist.metadata["Name"])
        pin = pins.get(name)
        if pin is None:
            problems.append(f"{name}=={dist.version}: not in uv.lock")
        elif name != PROJECT and pin.get("version") != dist.version:
            problems.append(f"{name}=={dist.version}: uv.lock pins {pin.get('version')}")
    return sorted(problems)


def main(argv: list[str]) -> int:
    if argv == ["uv-requirement"]:
        print(uv_requirement())
        return 0
    if argv == ["check"]:
        problems = off_lock()
        for problem in problems:
            print(f"lock check: {problem}", file=sys.stderr)
        return 1 if problems else 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
