"""Generate the Python code for proto/ into shared/paradoxplex/wire/ (committed, never edited).

Usage: python proto/generate.py            regenerate in place
       python proto/generate.py --check    fail (exit 1) when the committed code is stale
"""

from __future__ import annotations

import contextlib
import filecmp
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from grpc_tools import protoc  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
OUT = ROOT / "shared"
PROTOS = [
    "paradoxplex/wire/upstream.proto",
    "paradoxplex/wire/bus.proto",
    "paradoxplex/wire/handoff.proto",
]


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Hold what protoc's plugins print on file descriptor 2 (mypy-protobuf's "Writing mypy
    to ..." per file); show it only when protoc fails."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.write(held.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def generate(out: Path) -> None:
    # the mypy plugins live beside the interpreter, which may not be on PATH
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    include = Path(protoc.__file__).parent / "_proto"
    for proto in PROTOS:
        args = [
            "protoc",
            f"-I{PROTO_ROOT}",
            f"-I{include}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            f"--mypy_out={out}",
            f"--mypy_grpc_out={out}",
            proto,
        ]
        if protoc.main(args) != 0:
            raise SystemExit(f"protoc failed on {proto}")


def stale(committed: Path, fresh: Path) -> list[str]:
    wire = Path("paradoxplex/wire")

    def generated(folder: Path) -> set[str]:  # not __init__.py, not __pycache__
        return {p.name for p in folder.iterdir() if p.is_file() and p.name != "__init__.py"}

    names = generated(fresh / wire) | generated(committed / wire)
    return sorted(
        name
        for name in names
        if not (committed / wire / name).exists()
        or not (fresh / wire / name).exists()
        or not filecmp.cmp(committed / wire / name, fresh / wire / name, shallow=False)
    )


def main(argv: list[str]) -> int:
    if "--check" not in argv:
        generate(OUT)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        (fresh / "paradoxplex/wire").mkdir(parents=True)
        with quiet_stderr():  # a check writes nothing, so it says nothing of writing
            generate(fresh)
        bad = stale(OUT, fresh)
    if bad:
        print(f"generated code is stale, run 'python proto/generate.py': {', '.join(bad)}")
        return 1
    print("generated code is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
