"""``make run`` as a new user runs it: a node and an echo upstream, stopped with Ctrl-C.

Ctrl-C reaches the whole foreground process group; the node must drain and stop before its
upstream goes, so that its log holds no warning about a lost upstream.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.ports import free_range
from tests.support.processes import NODE_LINE

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


def test_ctrl_c_on_make_run_stops_the_node_before_its_upstream(tmp_path: Path) -> None:
    base = free_range(3)
    venv = Path(sys.executable).parent.parent  # the venv running the tests (.venv or another)
    stamp = venv / ".installed-stamp"
    command = [
        "make", "--no-print-directory", "-C", str(ROOT), "run", f"VENV={venv}", "-o", str(stamp),
        f"RUN_LISTEN=127.0.0.1:{base}", f"RUN_ADMIN=127.0.0.1:{base + 1}",
        f"RUN_UPSTREAM=127.0.0.1:{base + 2}",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARADOXPLEX_")}
    with (tmp_path / "stderr").open("w+") as err:
        make = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=err, text=True, env=env, start_new_session=True
        )
        with make:
            try:
                assert make.stdout is not None
                for line in make.stdout:  # bounded by the kill below if the node never starts
                    if NODE_LINE.search(line):
                        break
                else:
                    pytest.fail("make run ended before its node started")
                os.killpg(make.pid, signal.SIGINT)  # Ctrl-C: the whole group
                make.wait(timeout=20)
            finally:
                if make.poll() is None:
                    os.killpg(make.pid, signal.SIGKILL)
                    make.wait()
        err.seek(0)
        log = err.read()
    lines = [line for line in log.splitlines() if line.strip()]
    stopped = [
        i for i, line in enumerate(lines) if "paradoxplex.node" in line and " stopped" in line
    ]
    assert stopped, log
    # the upstream ignores the Ctrl-C (it started with SIGINT ignored) and drains only once
    # make's trap stops it, after the node
    upstream_draining = [
        i for i, line in enumerate(lines) if "paradoxplex.upstream" in line and "draining" in line
    ]
    assert all(i > stopped[0] for i in upstream_draining), log
    alarming = [line for line in lines if " WARNING " in line or " ERROR " in line]
    assert alarming == [], log
    group = subprocess.run(["pgrep", "-g", str(make.pid)], capture_output=True, check=False)
    assert group.stdout == b"", "a process of make run outlived it"
