"""What an operator meets first, as processes: ``--help``, ``--version``, start-up warnings
with their real cause, ``node --check``, ``paradoxplex health``, logs, metrics, the admin
CLI's columns and errors."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from paradoxplex.node.cli.main import version
from tests.support.eventually import eventually
from tests.support.processes import ECHO_LINE, NODE_LINE, Running, executable, run, start

pytestmark = pytest.mark.e2e

TOKEN = "s3cret"


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture
def echo_port() -> Iterator[int]:
    echo, ready = start("upstream-echo", "--listen", "127.0.0.1:0", ready=ECHO_LINE)
    with echo:
        yield int(ready["port"])


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def node(*flags: str) -> tuple[Running, str]:
    """A node on free ports; returns it and its admin URL."""
    running, ready = start(
        "node", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", *flags, ready=NODE_LINE
    )
    return running, ready["admin"]


def admin(url: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return run("admin", "--url", url, *argv)


# --- --help and --version -------------------------------------------------------------------


def test_version_is_printed_by_the_command_and_by_node() -> None:
    for argv in (["--version"], ["node", "--version"]):
        done = run(*argv)
        assert done.returncode == 0
        assert done.stdout == f"paradoxplex {version()}\n"
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", version())


def test_node_help_shows_choices_defaults_and_variables() -> None:
    text = " ".join(run("node", "--help").stdout.split())
    assert "--framing {raw,line,length}" in text
    assert "(default: raw; env PARADOXPLEX_FRAMING)" in text
    assert "(default: 0.0.0.0:7999; env PARADOXPLEX_LISTEN)" in text
    assert "(default: off; env PARADOXPLEX_METRICS_PUBLIC)" in text


def test_an_unknown_node_option_is_one_line_naming_it() -> None:
    done = run("node", "--bogus")
    assert done.returncode == 2
    assert done.stderr == (
        "paradoxplex node: unrecognized arguments: --bogus; see 'paradoxplex node --help'\n"
    )


def test_a_misspelled_option_is_one_line_with_the_option_meant() -> None:
    done = run("node", "--uptream", "127.0.0.1:45888")
    assert done.returncode == 2
    assert done.stderr == (
        "paradoxplex node: unrecognized arguments: --uptream 127.0.0.1:45888 "
        "(did you mean --upstream?); see 'paradoxplex node --help'\n"
    )
    admin = run("admin", "sockets", "--sate", "paused")
    assert admin.returncode == 2
    assert admin.stderr.count("\n") == 1
    assert "(did you mean --state?)" in admin.stderr


def test_cluster_and_echo_help_show_their_defaults() -> None:
    cluster = " ".join(run("cluster", "--help").stdout.split())
    assert "--nodes N balancer nodes (default: 3)" in cluster
    assert "--admin-base PORT first node's admin port; the next count up (default: 8001)" in cluster
    echo = run("upstream-echo", "--help").stdout
    assert "[--listen HOST:PORT]" in echo
    assert "default: 127.0.0.1:45888" in echo


# --- start-up: what is wrong, in words --------------------------------------------------------


def test_the_start_line_is_printed_once_and_not_logged() -> None:
    running, _ = node("--upstream", f"127.0.0.1:{closed_port()}")
    with running:
        assert running.terminate() == 0
        assert "listening on" not in running.log()


async def test_an_unreachable_upstream_is_logged_with_its_cause_and_shown_by_admin() -> None:
    upstream = f"127.0.0.1:{closed_port()}"
    running, url = node("--upstream", upstream, "--node-id", "n1")
    with running:
        line = f"upstream {upstream} not ready: unreachable: connection refused"
        await eventually(lambda: line in running.log(), timeout=10, message=line)
        table = admin(url, "upstreams")
        assert table.returncode == 0, table.stderr
        header, row = table.stdout.splitlines()
        assert header.split() == [
            "ID", "MODE", "NODES", "SENT", "RECEIVED", "ERRORS", "RTT_MS", "REASON",
        ]  # fmt: skip
        assert row.endswith("n1: unreachable: connection refused")
        health = admin(url, "health")
        assert health.returncode == 1
        fields = dict(line.split(None, 1) for line in health.stdout.splitlines())
        assert fields["ready"] == "no"
        assert fields["upstreams_ready"] == "0"
        assert fields["reason"] == "no upstream in rotation"
        assert running.terminate() == 0
        assert running.log().count(line) == 1  # once, not at every retry
        assert "removed" not in running.log()  # its own shutdown removes nothing fleet-wide
        assert "draining" not in running.log().replace("node n1 draining", "")


def test_a_node_without_upstream_says_so() -> None:
    running, _ = node()
    with running:
        assert running.terminate() == 0
        assert "no upstream registered: sockets are accepted but their data waits" in running.log()


@pytest.mark.parametrize("flag", ["--listen", "--admin"])
def test_an_address_in_use_names_its_setting(flag: str, taken_port: int) -> None:
    flags = {"--listen": "127.0.0.1:0", "--admin": "127.0.0.1:0"}
    flags[flag] = f"127.0.0.1:{taken_port}"
    done = run("node", *[word for pair in flags.items() for word in pair], timeout=20)
    assert done.returncode == 2
    assert done.stderr == (
        f"paradoxplex: {flag}: cannot listen on 127.0.0.1:{taken_port}: address already in use\n"
    )


def test_an_unreachable_redis_says_refused() -> None:
    port = closed_port()
    done = run("node", "--listen", "127.0.0.1:0", "--redis", f"redis://:pw@127.0.0.1:{port}/0")
    assert done.returncode == 2
    assert done.stderr == (
        f"paradoxplex: --redis: cannot reach redis://:***@127.0.0.1:{port}/0: connection refused\n"
    )


def test_a_combination_error_names_the_flag() -> None:
    done = run("node", "--workers", "2")
    assert done.returncode == 2
    assert done.stderr.startswith("paradoxplex: --workers: ")


def test_the_echo_upstream_on_a_taken_port_prints_only_its_own_line(taken_port: int) -> None:
    env = {k: v for k, v in os.environ.items() if k != "GRPC_VERBOSITY"}
    done = subprocess.run(
        [executable(), "upstream-echo", "--listen", f"127.0.0.1:{taken_port}"],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"paradoxplex upstream-echo: cannot listen on 127.0.0.1:{taken_port} (port in use?)"
    ]


# --- node --check and paradoxplex health ------------------------------------------------------


def test_node_check_reports_each_problem_on_one_line(echo_port: int) -> None:
    bad = closed_port()
    done = run(
        "node", "--check", "--listen", "127.0.0.1:0", "--upstream", f"127.0.0.1:{echo_port}",
        "--upstream", f"127.0.0.1:{bad}", "--redis", f"redis://127.0.0.1:{bad}/0",
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"problem: --redis redis://127.0.0.1:{bad}/0: connection refused",
        f"problem: --upstream 127.0.0.1:{bad}: connection refused",
    ]
    assert f"ok: --upstream 127.0.0.1:{echo_port}" in done.stdout.splitlines()
    good = run("node", "--check", "--listen", "127.0.0.1:0", "--upstream", f"127.0.0.1:{echo_port}")
    assert good.returncode == 0, good.stderr


@pytest.mark.slow
def test_health_probes_an_upstream_and_a_node(echo_port: int) -> None:
    assert run("health", "--upstream", f"127.0.0.1:{echo_port}").returncode == 0
    down = run("health", "--upstream", f"127.0.0.1:{closed_port()}")
    assert down.returncode == 1
    assert down.stderr.endswith(": connection refused\n")
    running, url = node("--upstream", f"127.0.0.1:{echo_port}")
    with running:
        done = run("health", "--admin", url.removeprefix("http://"))
        assert done.returncode == 0, done.stderr


def test_health_finds_the_role_of_the_main_process() -> None:
    from paradoxplex.node.cli.healthcheck import Target, target_of
    from paradoxplex.shared.config import Address

    echo = ["/opt/paradoxplex/bin/python", "paradoxplex", "upstream-echo", "--listen", "0.0.0.0:5"]
    assert target_of(echo, {}) == Target("upstream", Address("127.0.0.1", 5))
    assert target_of(["paradoxplex", "upstream-echo"], {}).address.port == 45888
    node_env = {"PARADOXPLEX_ADMIN": "0.0.0.0:8000"}
    assert target_of(["paradoxplex", "node"], node_env) == Target(
        "admin", Address("127.0.0.1", 8000)
    )


# --- logs and metrics -------------------------------------------------------------------------


def test_json_logs_are_one_object_per_line_with_the_node_id() -> None:
    running, _ = node("--log-format", "json", "--node-id", "j1")
    with running:
        assert running.terminate() == 0
        lines = running.log().splitlines()
    assert lines
    records = [json.loads(line) for line in lines]
    assert {record["node_id"] for record in records} == {"j1"}
    assert {"time", "level", "logger", "message"} <= set(records[0])


def scrape(url: str, token: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(f"{url}/metrics")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        error.close()
        return error.code, ""


async def test_metrics_follow_prometheus_conventions(echo_port: int) -> None:
    running, url = node(
        "--upstream", f"127.0.0.1:{echo_port}", "--alive-timeout", "0.3", "--admin-token", TOKEN
    )
    with running:
        assert scrape(url)[0] == 401  # not public by default

        def rtt_measured() -> bool:
            return 'paradoxplex_upstream_rtt_seconds_count{upstream="' in scrape(url, TOKEN)[1]

        await eventually(rtt_measured, timeout=10, message="an RTT sample")
        text = scrape(url, TOKEN)[1]
        for name in (
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_cpu_seconds_total",
            f'paradoxplex_build_info{{version="{version()}"}} 1.0',
            "paradoxplex_bytes_in_total",
            "paradoxplex_sockets_opened_total",
            "paradoxplex_bus_delivery_seconds_count",
            f'paradoxplex_upstream_errors_total{{upstream="127.0.0.1:{echo_port}"}} 0.0',
        ):
            assert name in text, name
        listing = admin(url, "--token", TOKEN, "--json", "upstreams")
        [item] = json.loads(listing.stdout)["items"]
        [view] = item["nodes"].values()
        assert {"sent", "received", "errors", "rtt_ms", "reason"} <= set(view)
        assert view["rtt_ms"] > 0
        assert view["reason"] == ""


def test_metrics_public_lets_prometheus_scrape_without_the_token(echo_port: int) -> None:
    running, url = node("--admin-token", TOKEN, "--metrics-public")
    with running:
        status, text = scrape(url)
        assert status == 200
        assert "paradoxplex_build_info" in text
        nodes = urllib.request.Request(f"{url}/v1/nodes")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(nodes, timeout=5)
        refused.value.close()
        assert refused.value.code == 401  # the rest still needs it


def test_the_nodes_admin_column_is_reachable_for_a_wildcard_admin() -> None:
    running, ready = start(
        "node", "--listen", "127.0.0.1:0", "--admin", "0.0.0.0:0", "--admin-token", TOKEN,
        ready=NODE_LINE,
    )  # fmt: skip
    with running:
        assert "0.0.0.0" not in ready["admin"]
        port = ready["admin"].rpartition(":")[2]
        done = admin(f"http://127.0.0.1:{port}", "--token", TOKEN, "nodes")
        assert done.returncode == 0, done.stderr
        assert "http://0.0.0.0" not in done.stdout
