"""deploy/systemd: the units pass ``systemd-analyze verify`` (and its offline security review),
say what the issue asks of them (``node --check`` before start, a high ``LimitNOFILE``, a stop
timeout over the drain, SIGHUP on reload, an environment file, a user that is not root,
hardening), and the environment file holds settings the node loads, as its ExecStartPre
checks them."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from paradoxplex.shared.config import NodeConfig, env_name
from tests.deploy.image import ROOT, SHUTDOWN_AFTER_GRACE
from tests.support.processes import environment, executable

SYSTEMD = ROOT / "deploy" / "systemd"
NODE_UNIT = SYSTEMD / "paradoxplex.service"
ECHO_UNIT = SYSTEMD / "paradoxplex-upstream-echo.service"
ENV_FILE = SYSTEMD / "paradoxplex.env"
INSTALLED = "/opt/paradoxplex/bin/paradoxplex"  # where the units expect the venv's script
DEFAULT_DRAIN_GRACE = str(NodeConfig.__dataclass_fields__["drain_grace"].default)
UNITS = sorted(SYSTEMD.glob("*.service"))


def directives(unit: Path) -> dict[str, list[str]]:
    """``Key: [values]`` of a unit file, sections merged (our units repeat no key across them)."""
    found: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def environment_file(path: Path) -> dict[str, str]:
    pairs = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.fail(
            "the systemd unit tests run systemd-analyze, which is missing: "
            "`apt-get install -y systemd` (it only reads the unit files; no systemd need run)"
        )
    return found


def runnable_copy(unit: Path, directory: Path) -> Path:
    """The unit with its ExecStart binary pointed at this checkout's ``paradoxplex`` (verify
    needs the binary to exist), in ``directory``."""
    copy = directory / unit.name
    copy.write_text(unit.read_text().replace(INSTALLED, executable()))
    return copy


def node_check(how: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``paradoxplex node --check[=config]`` with ``env``, as the unit's ExecStartPre runs."""
    return subprocess.run(
        [executable(), "node", how],
        capture_output=True, text=True, timeout=30, env=environment(**env), check=False,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def test_the_units_are_the_ones_we_ship() -> None:
    assert UNITS == [ECHO_UNIT, NODE_UNIT]


@pytest.mark.parametrize("unit", UNITS, ids=lambda path: path.name)
def test_systemd_analyze_verifies_the_unit_without_a_word(unit: Path, tmp_path: Path) -> None:
    copy = runnable_copy(unit, tmp_path)
    done = subprocess.run(
        [systemd_analyze(), "verify", str(copy)],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False,
    )  # fmt: skip
    # verify exits 0 on unknown keys and bad values too, but says so: any output is a problem
    assert done.returncode == 0, done.stderr
    assert (done.stdout + done.stderr).strip() == ""
    review = subprocess.run(
        [systemd_analyze(), "security", "--offline=yes", "--no-pager", str(copy)],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False,
    )  # fmt: skip
    exposure = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", review.stdout)
    assert exposure is not None, review.stdout + review.stderr
    assert float(exposure[1]) <= 2.0, review.stdout  # 1.5 now; 9.6 for a unit without any


def test_systemd_analyze_catches_a_broken_unit(tmp_path: Path) -> None:
    copy = runnable_copy(NODE_UNIT, tmp_path)
    copy.write_text(copy.read_text().replace("LimitNOFILE=1048576", "LimitNOFILE=lots"))
    done = subprocess.run(
        [systemd_analyze(), "verify", str(copy)],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert "Failed to parse resource value" in done.stdout + done.stderr


def test_the_node_unit_checks_first_drains_reloads_and_is_hardened() -> None:
    unit = directives(NODE_UNIT)
    [start] = unit["ExecStart"]
    assert shlex.split(start) == [INSTALLED, "node"]
    [check] = unit["ExecStartPre"]
    assert shlex.split(check) == [INSTALLED, "node", "--check=config"]
    assert unit["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert unit["KillSignal"] == ["SIGTERM"]
    assert int(unit["LimitNOFILE"][0]) >= 1_048_576
    assert unit["EnvironmentFile"] == ["/etc/paradoxplex/paradoxplex.env"]
    assert (unit["Type"], unit["NotifyAccess"]) == (["notify"], ["all"])  # READY, MAINPID
    handoff = environment_file(ENV_FILE)[env_name("handoff_socket")]
    assert handoff.startswith(f"/run/{unit['RuntimeDirectory'][0]}/")
    assert "systemctl kill --kill-whom=main --signal=SIGUSR2 paradoxplex" in NODE_UNIT.read_text()
    assert unit["User"] == ["paradoxplex"]
    assert unit["Restart"] == ["on-failure"]
    drain = float(environment_file(ENV_FILE).get(env_name("drain_grace"), DEFAULT_DRAIN_GRACE))
    stop = float(unit["TimeoutStopSec"][0])
    assert stop > drain + SHUTDOWN_AFTER_GRACE, "TimeoutStopSec must outlast the drain"
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "CapabilityBoundingSet": "",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
    }.items():
        assert unit[key] == [value], key


def test_the_echo_unit_runs_the_upstream_the_env_file_names() -> None:
    unit = directives(ECHO_UNIT)
    [start] = unit["ExecStart"]
    argv = shlex.split(start)
    assert argv[:2] == [INSTALLED, "upstream-echo"]
    listen = argv[argv.index("--listen") + 1]
    assert environment_file(ENV_FILE)[env_name("upstream")] == listen
    assert unit["User"] == ["paradoxplex"]
    assert unit["NoNewPrivileges"] == ["yes"]


def test_the_environment_file_holds_node_settings() -> None:
    known = {env_name(name) for name in NodeConfig.__dataclass_fields__}
    env = environment_file(ENV_FILE)
    assert env
    assert set(env) <= known, f"not settings: {set(env) - known}"


def test_the_units_start_check_passes_on_the_environment_file_with_upstreams_down() -> None:
    """The ExecStartPre line, with the unit's environment: the settings load and nothing is
    reached, so the node may start before its upstream (127.0.0.1:45888 is likely down)."""
    env = environment_file(ENV_FILE)
    done = node_check("--check=config", env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("ok: settings of node ")
    assert not any("--upstream" in line or "--listen" in line for line in lines)
    missing = {env_name("tls_cert"): "/nonexistent.pem", env_name("tls_key"): "/nonexistent.pem"}
    broken = node_check("--check=config", env | missing)
    assert broken.returncode == 1  # a node would not start: the unit does not either
    assert "problem: --tls-cert" in broken.stderr
    reached = node_check("--check", env | {env_name("upstream"): "127.0.0.1:1"})
    assert reached.returncode == 1  # the whole check does reach the upstream
    assert "problem: --upstream 127.0.0.1:1: connection refused" in reached.stderr
