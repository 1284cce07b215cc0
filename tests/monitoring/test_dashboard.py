"""The Grafana dashboard, read as a file: importable as is (the datasource is a variable, no
``__inputs``), every query reads metrics a node exports through the dashboard's own variables,
and it shows what an operator of a fleet looks for. A real Prometheus runs its queries in
test_prometheus.py."""

from __future__ import annotations

import itertools
import re

from tests.monitoring.tools import (
    DASHBOARD,
    VARIABLES,
    dashboard,
    exported_names,
    metric_names,
    panels,
)

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# What the dashboard must show (the list): one metric at least for each.
SHOWN = {
    "nodes": "up",
    "sockets": "paradoxplex_sockets",
    "messages in": "paradoxplex_messages_in_total",
    "messages out": "paradoxplex_messages_out_total",
    "drops by reason": "paradoxplex_drops_total",
    "upstream health": "paradoxplex_upstream_state",
    "upstream RTT": "paradoxplex_upstream_rtt_seconds_bucket",
    "bus delivery latency": "paradoxplex_bus_delivery_seconds_bucket",
    "bus gaps": "paradoxplex_bus_gaps_total",
    "Redis state": "paradoxplex_fleet_degraded",
    "process CPU": "process_cpu_seconds_total",
    "RSS": "process_resident_memory_bytes",
    "fds": "process_open_fds",
}


def expressions() -> list[str]:
    return [target["expr"] for panel in panels() for target in panel["targets"]]


def test_it_imports_as_is_with_the_datasource_as_a_variable() -> None:
    board = dashboard()
    assert "__inputs" not in board
    assert board.get("id") is None  # Grafana gives it one on import
    assert board["uid"] == "paradoxplex-fleet"
    assert "${DS_" not in DASHBOARD.read_text()
    variables = {variable["name"]: variable for variable in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("job", "instance"):
        assert variables[name]["datasource"] == DATASOURCE
    assert variables["instance"]["includeAll"]
    assert variables["instance"]["allValue"] == ".*"
    for panel in panels():
        assert panel["datasource"] == DATASOURCE, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]


def test_queries_use_only_the_dashboards_variables() -> None:
    defined = {f"${variable['name']}" for variable in dashboard()["templating"]["list"]}
    for expr in expressions():
        used = set(re.findall(r"\$\w+", expr))
        assert used <= defined | {"$__rate_interval"}, expr
        assert used <= set(VARIABLES), f"the live test gives {used - set(VARIABLES)} no value"
        assert 'job=~"$job"' in expr, expr
        assert 'instance=~"$instance"' in expr, expr


def test_every_query_reads_metrics_a_node_exports() -> None:
    exported = exported_names()
    for expr in expressions():
        names = metric_names(expr)
        assert names, expr
        assert names <= exported, f"{expr}: not exported: {names - exported}"


def test_it_shows_what_a_fleet_operator_looks_for() -> None:
    read = set().union(*map(metric_names, expressions()))
    missing = {what: name for what, name in SHOWN.items() if name not in read}
    assert not missing


def test_panels_have_ids_titles_and_do_not_overlap() -> None:
    board = dashboard()
    every = [*board["panels"], *(p for row in board["panels"] for p in row.get("panels", []))]
    ids = [panel["id"] for panel in every]
    assert len(ids) == len(set(ids))
    cells = []
    for panel in every:
        assert panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] >= 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        cells.append(
            (panel["title"], set(itertools.product(
                range(grid["x"], grid["x"] + grid["w"]), range(grid["y"], grid["y"] + grid["h"])
            )))
        )  # fmt: skip
    for (one, a), (other, b) in itertools.combinations(cells, 2):
        assert not a & b, f"{one!r} overlaps {other!r}"
