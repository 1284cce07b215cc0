"""A real Prometheus (Debian's binary) scrapes a real fleet: two ``paradoxplex node`` processes
on one Redis, with an ``upstream-echo`` that also broadcasts (cross-node traffic on the bus),
and clients sending all along. Once every node was scraped at least twice, every dashboard
panel's query, its variables set as Grafana would, returns data through Prometheus' HTTP API;
every metric an alert or a panel names exists in the scrape; the alert rules load and
evaluate, and none fires on this healthy fleet."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import yaml

from tests.conftest import delete_prefix
from tests.monitoring.tools import (
    JOB,
    alert_rules,
    binary,
    metric_names,
    panels,
    rule_files,
    substitute,
)
from tests.support.client import Client, close_all
from tests.support.eventually import eventually
from tests.support.fleet import (
    PARADOXPLEX,
    NodeProc,
    Proc,
    echo_address,
    spawn_node,
    stop_all,
)
from tests.support.ports import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TOKEN = "prometheus-test-token"
SCRAPE = "1s"


class Prometheus:
    """Prometheus' HTTP API at ``url``."""

    def __init__(self, url: str, http: aiohttp.ClientSession) -> None:
        self.url = url
        self.http = http

    async def get(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        async with self.http.get(f"{self.url}{path}?{query}") as answer:
            body = await answer.json()
        assert body["status"] == "success", f"{path} {params}: {body}"
        return body["data"]

    async def query(self, expr: str) -> list[dict[str, Any]]:
        data = await self.get("/api/v1/query", query=expr)
        assert data["resultType"] == "vector", expr
        result: list[dict[str, Any]] = data["result"]
        return result

    async def ready(self) -> bool:
        with contextlib.suppress(aiohttp.ClientError):
            async with self.http.get(f"{self.url}/-/ready") as answer:
                return answer.status == 200
        return False


def numbers(result: list[dict[str, Any]]) -> list[float]:
    return [float(sample["value"][1]) for sample in result]


def config(targets: list[str]) -> dict[str, Any]:
    return {
        "global": {
            "scrape_interval": SCRAPE,
            "scrape_timeout": SCRAPE,
            "evaluation_interval": SCRAPE,
        },
        "rule_files": [str(path) for path in rule_files()],
        "scrape_configs": [
            {
                "job_name": JOB,
                "authorization": {"type": "Bearer", "credentials": TOKEN},
                "static_configs": [{"targets": targets}],
            }
        ],
    }


@pytest_asyncio.fixture
async def scraped_fleet(
    redis_url: str, key_prefix: str, tmp_path: Path
) -> AsyncIterator[tuple[Prometheus, list[NodeProc], list[Client]]]:
    procs: list[Proc] = []
    clients: list[Client] = []
    http = aiohttp.ClientSession()
    try:
        echo = Proc(
            "echo",
            [PARADOXPLEX, "upstream-echo", "--listen", "127.0.0.1:0", "--broadcast-every", "4"],
        )
        procs.append(echo)
        upstream = await echo_address(echo)
        flags = ("--admin-token", TOKEN, "--alive-timeout", "1.5")
        nodes = [spawn_node(redis_url, key_prefix, name, [upstream], *flags) for name in "ab"]
        procs += nodes
        for node in nodes:
            await node.started()
        targets = [node.admin_url.removeprefix("http://") for node in nodes]
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config(targets)))
        port = free_port()
        procs.append(
            Proc(
                "prometheus",
                [
                    binary("prometheus"),
                    f"--config.file={tmp_path / 'prometheus.yml'}",
                    f"--storage.tsdb.path={tmp_path / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--log.level=warn",
                ],
            )
        )
        prometheus = Prometheus(f"http://127.0.0.1:{port}", http)
        await eventually(prometheus.ready, timeout=20, message="prometheus ready")
        clients = [
            await Client.connect(node.listen, collect=True) for node in nodes for _ in range(2)
        ]
        gone = await Client.connect(
            nodes[0].listen, collect=True
        )  # a socket closed: closes by reason
        await gone.round_trip(b"bye\n")
        await gone.aclose()
        yield prometheus, nodes, clients
    finally:
        await close_all(clients)
        await http.close()
        stop_all(reversed(procs))
        await delete_prefix(redis_url, key_prefix)


async def chatter(clients: list[Client]) -> None:
    """Each client sends a line every 50 ms (the echo answers; every 4th is broadcast)."""
    for number in range(1_000_000):
        for client in clients:
            await client.send(b"m%d\n" % number)
        await asyncio.sleep(0.05)


async def test_every_panel_query_returns_data_from_a_real_fleet(
    scraped_fleet: tuple[Prometheus, list[NodeProc], list[Client]],
) -> None:
    prometheus, nodes, clients = scraped_fleet
    started = time.monotonic()
    traffic = asyncio.create_task(chatter(clients))
    try:

        async def scraped_twice() -> bool:
            counts = await prometheus.query(f'count_over_time(up{{job="{JOB}"}}[1m])')
            ups = await prometheus.query(f'up{{job="{JOB}"}}')
            return len(counts) == 2 and min(numbers(counts)) >= 2 and numbers(ups) == [1, 1]

        await eventually(scraped_twice, timeout=20, message="both nodes scraped twice")
        queries = {
            f"{panel['title']} [{target['refId']}]": substitute(target["expr"])
            for panel in panels()
            for target in panel["targets"]
        }
        answers: dict[str, list[float]] = {}

        async def every_panel_has_data() -> bool:
            for name, expr in queries.items():
                answers[name] = numbers(await prometheus.query(expr))
            return all(any(not math.isnan(v) for v in values) for values in answers.values())

        try:
            await eventually(every_panel_has_data, timeout=30, message="data in every panel")
        except AssertionError:
            empty = {name: values for name, values in answers.items() if not values}
            nan = [
                name for name, values in answers.items() if values and all(map(math.isnan, values))
            ]
            raise AssertionError(f"no data: {empty}; only NaN: {nan}") from None
    finally:
        traffic.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await traffic

    assert len(queries) >= 30
    names = set(await prometheus.get("/api/v1/label/__name__/values"))
    used = set().union(*(metric_names(rule["expr"]) for rule in alert_rules()))
    used |= set().union(*map(metric_names, queries.values()))
    assert not used - names, f"named by alerts or panels, absent from the scrape: {used - names}"

    jobs = await prometheus.get("/api/v1/label/job/values", **{"match[]": "paradoxplex_build_info"})
    assert jobs == [JOB]  # the dashboard's $job
    instances = await prometheus.get(
        "/api/v1/label/instance/values", **{"match[]": f'paradoxplex_build_info{{job="{JOB}"}}'}
    )  # the dashboard's $instance
    assert sorted(instances) == sorted(n.admin_url.removeprefix("http://") for n in nodes)

    async def rules_evaluated() -> bool:
        groups = (await prometheus.get("/api/v1/rules"))["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        return len(rules) == len(alert_rules()) and all(rule["health"] == "ok" for rule in rules)

    await eventually(rules_evaluated, timeout=10, message="every alert rule evaluated")
    groups = (await prometheus.get("/api/v1/rules"))["groups"]
    states = {rule["name"]: rule["state"] for group in groups for rule in group["rules"]}
    assert states == {rule["alert"]: "inactive" for rule in alert_rules()}
    print(f"prometheus and a 2-node fleet: all {len(queries)} queries answered in "
          f"{time.monotonic() - started:.1f} s")  # fmt: skip
