"""The built wheel carries everything a node serves or an upstream author needs (the dashboard's
files, the OpenAPI document, the protos): built with ``uv build``, installed into a fresh venv
at the lock's versions, its ``paradoxplex node`` serves ``/ui/`` and ``/openapi.json`` from the
installed package, not from this checkout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path

import pytest

from paradoxplex.admin import openapi
from tests.support.fleet import NodeProc, stop_all

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
UV = Path(sys.executable).parent / "uv"
UI = ROOT / "admin" / "paradoxplex" / "admin" / "ui"
PROTOS = ROOT / "proto" / "paradoxplex" / "wire"
CARRIED = {
    **{f"paradoxplex/admin/ui/{path.name}": path for path in sorted(UI.glob("*.*"))},
    **{f"paradoxplex/wire/{path.name}": path for path in sorted(PROTOS.glob("*.proto"))},
}


def uv(*args: str, cwd: Path = ROOT) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "VIRTUAL_ENV"))}
    env["UV_PYTHON_DOWNLOADS"] = "never"
    done = subprocess.run(
        [str(UV), *args],
        capture_output=True, text=True, timeout=300, cwd=cwd, env=env, check=False,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 0, f"uv {' '.join(args)}: {done.stderr[-3000:]}"
    return done.stdout


def get(url: str) -> tuple[str, bytes]:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return answer.headers.get_content_type(), answer.read()


def build_and_install(tmp_path: Path) -> Path:
    """Build the wheel, check what it carries, install it into a fresh venv; the venv."""
    assert {"index.html", "app.js", "app.css"} <= {Path(name).name for name in CARRIED}
    uv("build", "--wheel", "--quiet", "--out-dir", str(tmp_path / "dist"))
    [wheel] = (tmp_path / "dist").glob("paradoxplex-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        for name, source in CARRIED.items():
            assert archive.read(name) == source.read_bytes(), name

    constraints = tmp_path / "constraints.txt"
    constraints.write_text(uv("export", "--frozen", "--no-hashes", "--no-emit-project"))
    venv = tmp_path / "venv"
    uv("venv", "--quiet", "--python", sys.executable, str(venv))
    python = venv / "bin" / "python"
    uv("pip", "install", "--quiet", "--python", str(python), "-c", str(constraints), str(wheel))

    where = subprocess.run(
        [str(python), "-c", PROBE], capture_output=True, text=True, timeout=60, cwd=tmp_path,
        env={"PATH": os.environ["PATH"]}, check=True,
    ).stdout  # fmt: skip
    found = json.loads(where)
    assert Path(found["node"]).is_relative_to(venv), found  # the installed copy, not ours
    assert found["proto"] == (PROTOS / "upstream.proto").read_text()
    return venv


async def test_the_installed_wheel_runs_a_node_that_serves_the_dashboard(tmp_path: Path) -> None:
    venv = build_and_install(tmp_path)
    node = NodeProc(
        "wheel-node",
        [str(venv / "bin" / "paradoxplex"), "node", "--listen", "127.0.0.1:0",
         "--admin", "127.0.0.1:0", "--node-id", "from-wheel"],
    )  # fmt: skip
    try:
        await node.started()
        kind, page = get(f"{node.admin_url}/ui/")
        assert kind == "text/html"
        assert page == (UI / "index.html").read_bytes()
        _, script = get(f"{node.admin_url}/ui/app.js")
        assert script == (UI / "app.js").read_bytes()
        _, document = get(f"{node.admin_url}/openapi.json")
        assert json.loads(document) == openapi.document(secured=False)  # no --admin-token
    finally:
        stop_all([node])


PROBE = """
import importlib.resources, json, paradoxplex.node
print(json.dumps({
    "node": paradoxplex.node.__file__,
    "proto": importlib.resources.files("paradoxplex.wire").joinpath("upstream.proto").read_text(),
}))
"""
