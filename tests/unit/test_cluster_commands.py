"""``paradoxplex cluster``'s typed commands and upgrades, without processes: what a line
means, which member an upgrade picks, and that a bad line says what works."""

from __future__ import annotations

import argparse
import os

from paradoxplex.node.cli.devfleet.command import Commands, run_command
from paradoxplex.node.cli.devfleet.processes import Cluster, Member


def cluster_of(*names: str) -> Cluster:
    cluster = Cluster(argparse.Namespace())
    for name in names:
        role = "node" if name.startswith("node") else "upstream"
        cluster.members.append(Member(name, role, ["true"], handoff=f"/run/{name}.sock"))
    return cluster


def test_upgrade_picks_the_named_node_or_every_node_once() -> None:
    cluster = cluster_of("upstream1", "node1", "node2")
    assert run_command(cluster, "upgrade node2") == []
    assert [m.name for m in cluster.upgrades] == ["node2"]
    assert run_command(cluster, "upgrade all") == []
    assert [m.name for m in cluster.upgrades] == ["node2", "node1"]


def test_a_bad_command_says_what_works() -> None:
    cluster = cluster_of("node1")
    [said] = run_command(cluster, "upgrade upstream1")
    assert "no node 'upstream1' to upgrade (nodes: node1, all)" in said
    [said] = run_command(cluster, "restart node1")
    assert "try: upgrade node1, upgrade all" in said
    assert cluster.upgrades == []


def test_typed_lines_are_read_whole_and_a_closed_input_ends_them() -> None:
    read, write = os.pipe()
    with os.fdopen(read) as stream:
        commands = Commands(stream)
        os.write(write, b"upgrade no")
        assert commands.read(0.5) == []
        os.write(write, b"de1\n\nupgrade all\n")
        assert commands.read(0.5) == ["upgrade node1", "upgrade all"]
        os.close(write)
        assert commands.read(0.5) == []
        assert commands.stream is None
