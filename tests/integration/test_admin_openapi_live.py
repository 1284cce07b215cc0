"""The live admin API of a real node against its own OpenAPI document, property-based.

Schemathesis reads ``/openapi.json`` from the node and sends generated requests, valid and
invalid ones, bounded in number: every answer must match the document (status, content type,
headers, body schema), no answer may be a 5xx, data the document refuses must be refused and
data it allows must be accepted.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from tests.support.node_harness import running_node, start_upstream

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
HOOKS = ROOT / "tests" / "support" / "openapi_hooks.py"
MAX_EXAMPLES = 15
TOKEN = "fuzz-token"


@pytest.mark.parametrize("token", [TOKEN, None], ids=["token", "no-token"])
async def test_the_live_api_matches_its_own_document(tmp_path: Path, token: str | None) -> None:
    auth = [f"--header=Authorization: Bearer {token}"] if token else []
    server, _ = await start_upstream()
    try:
        async with running_node(server.port, admin_token=token) as node:
            command = [
                sys.executable,
                "-m",
                "schemathesis.cli",
                "run",
                f"{node.admin_url}/openapi.json",
                "--checks=all",
                "--exclude-checks=use_after_free,ensure_resource_availability",
                "--phases=examples,coverage,fuzzing",
                f"--max-examples={MAX_EXAMPLES}",
                "--seed=1",
                "--workers=1",
                "--request-timeout=5",
                "--no-color",
                *auth,
            ]
            env = os.environ | {
                "SCHEMATHESIS_HOOKS": str(HOOKS),
                "PYTHONPATH": str(ROOT),
                "FUZZED_NODE": node.node_id,
            }
            process = await asyncio.create_subprocess_exec(
                *command,
                cwd=tmp_path,
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            async with asyncio.timeout(90):
                output, _ = await process.communicate()
    finally:
        await server.stop(0)
    report = output.decode(errors="replace")
    assert process.returncode == 0, report
