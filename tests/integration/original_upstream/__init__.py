"""An upstream built from the original proto only: compiled at test time, run as a process.

The original contract declares the same proto package and message names as paradoxplex's
own proto, so both cannot live in one process's default descriptor pool: the original
upstream runs in a process of its own (``serve.py``) and reports what it receives on stdout.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

PROTO = Path(__file__).with_name("upstream_original.proto")
SERVE = Path(__file__).with_name("serve.py")
PACKAGE = "original_upstream_wire"
START_TIMEOUT = 10.0


def compile_original(out_dir: Path) -> Path:
    """Generate ``PACKAGE/upstream_original_pb2{,_grpc}.py`` under ``out_dir``; return it."""
    package_dir = out_dir / PACKAGE
    package_dir.mkdir(parents=True, exist_ok=True)
    (package_dir / "__init__.py").write_text("")
    shutil.copy(PROTO, package_dir / PROTO.name)
    well_known = resources.files("grpc_tools") / "_proto"
    command = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"-I{out_dir}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        str(package_dir / PROTO.name),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    assert (package_dir / "upstream_original_pb2_grpc.py").exists()
    return out_dir


@dataclass(frozen=True, slots=True)
class Received:
    """One message as the original upstream decoded it."""

    uuid: str
    payload: bytes
    unknown: int  # fields it does not know: extensions leaking to an original upstream
    sent: bytes  # its reply, serialized

    @classmethod
    def from_line(cls, line: str) -> Received:
        data: dict[str, Any] = json.loads(line)
        return cls(
            str(data["uuid"]),
            base64.b64decode(data["payload"]),
            int(data["unknown"]),
            bytes.fromhex(data["sent"]),
        )


class OriginalUpstream:
    """``serve.py`` in a process: ``await start()``, ``port``, ``received``, ``await stop()``."""

    def __init__(self, wire_dir: Path) -> None:
        self.wire_dir = wire_dir
        self.port = 0
        self.received: list[Received] = []
        self.other_output: list[str] = []
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> OriginalUpstream:
        env = dict(os.environ, GRPC_VERBOSITY="ERROR", PYTHONPATH="")
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(SERVE),
            str(self.wire_dir),
            PACKAGE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
        )
        stdout = self._process.stdout
        assert stdout is not None
        async with asyncio.timeout(START_TIMEOUT):
            while not self.port:
                line = (await stdout.readline()).decode()
                if not line:
                    raise RuntimeError(f"original upstream exited: {self.other_output}")
                if line.startswith("listening "):
                    self.port = int(line.split()[1])
                else:
                    self.other_output.append(line)
        self._reader = asyncio.create_task(self._read(stdout))
        return self

    async def _read(self, stdout: asyncio.StreamReader) -> None:
        while line := (await stdout.readline()).decode():
            if line.startswith("{"):
                self.received.append(Received.from_line(line))
            else:
                self.other_output.append(line)

    @property
    def payloads(self) -> list[bytes]:
        return [message.payload for message in self.received]

    async def stop(self) -> None:
        process = self._process
        if process is None:
            return
        if process.returncode is None:
            process.terminate()
        await process.wait()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await self._reader

    def __repr__(self) -> str:
        return f"<OriginalUpstream port={self.port} received={len(self.received)}>"
