"""An upstream stops under load: nothing lost, nothing twice, in order (batch SDK upstreams);
counted at-most-once (original-proto upstreams); a poison message is dropped after
``--max-deliveries`` and the fleet keeps serving.

Real processes: ``paradoxplex node`` (raw framing, ``--alive-timeout 1``) and two
``paradoxplex upstream-echo`` processes; 200 sockets each run a closed loop of numbered lines
(one line, wait for its echo, the next) for 8 s, and one upstream is stopped 3 s in: SIGKILL
(a crash), SIGTERM (a rolling deploy), a drain through the admin API, or SIGSTOP (the node's
``live`` check fails; SIGCONT once the node took it out of rotation, so that whatever it
still held comes back late). Each run prints its counts (``-s`` shows them).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import aiohttp
import pytest

from tests.support.client import Client, close_all
from tests.support.closed_loop import Counts, closed_loop, metric, tally
from tests.support.eventually import eventually
from tests.support.fleet import PARADOXPLEX, NodeProc, Proc, echo_address, stop_all
from tests.support.ports import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SOCKETS = 200
STOP_AT = 3.0  # seconds into the load
POISONED = 3  # the exit code of a poison upstream that met the poison
LOAD = 8.0
GRACE = 5.0


@dataclass
class Setup:
    node: NodeProc
    upstreams: list[Proc]
    addresses: list[str]

    async def in_rotation(self) -> float:
        return await metric(self.node.admin_url, "paradoxplex_upstreams_in_rotation")

    async def metric(self, name: str, **labels: str) -> float:
        return await metric(self.node.admin_url, name, **labels)


def echo(name: str, *args: str, listen: str = "127.0.0.1:0") -> Proc:
    return Proc(
        name, [PARADOXPLEX, "upstream-echo", "--listen", listen, "--grace", str(GRACE), *args]
    )


def node(addresses: list[str], *args: str) -> NodeProc:
    command = [
        PARADOXPLEX, "node", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
        "--node-id", "n1", "--alive-timeout", "1", "--drain-grace", "1",
        *args,
    ]  # fmt: skip
    for address in addresses:
        command += ["--upstream", address]
    return NodeProc("node", command)


@contextlib.asynccontextmanager
async def running(upstreams: list[Proc], *node_args: str) -> AsyncIterator[Setup]:
    procs: list[Proc] = list(upstreams)
    try:
        addresses = [await echo_address(proc) for proc in upstreams]
        balancer = node(addresses, *node_args)
        procs.append(balancer)
        await balancer.started()
        setup = Setup(balancer, upstreams, addresses)

        async def all_in() -> bool:
            return await setup.in_rotation() == len(upstreams)

        await eventually(all_in, timeout=15, message="both upstreams in rotation")
        yield setup
    finally:
        stop_all(procs)


async def load_with_a_stop(
    setup: Setup,
    stop: Callable[[], Awaitable[None]],
    *,
    answer_timeout: float = 20.0,
) -> Counts:
    clients = [await Client.connect(setup.node.listen, collect=True) for _ in range(SOCKETS)]
    try:
        load = asyncio.create_task(
            closed_loop(clients, seconds=LOAD, answer_timeout=answer_timeout)
        )
        await asyncio.sleep(STOP_AT)  # the scenario: the stop comes 3 s into the load
        await stop()
        loops = await load
        return tally(loops)
    finally:
        await close_all(clients)


def report(kind: str, counts: Counts, **extra: float) -> str:
    more = " ".join(f"{key}={value:g}" for key, value in extra.items())
    line = f"[{kind}] {counts} {more}"
    print(line, file=sys.stderr)
    return line


async def sdk_fleet_case(kind: str) -> None:
    upstreams = [echo("echo-a"), echo("echo-b")]
    async with running(upstreams) as setup:
        victim = setup.upstreams[0]

        async def stop() -> None:
            if kind == "sigkill":
                victim.signal(signal.SIGKILL)
            elif kind == "sigterm":
                victim.signal(signal.SIGTERM)
            elif kind == "drain":
                url = f"{setup.node.admin_url}/v1/upstreams/{setup.addresses[0]}/drain"
                async with aiohttp.ClientSession() as http, http.post(url) as answer:
                    assert answer.status == 200, await answer.text()
            else:  # sigstop: live fails, the node takes it out; then it wakes up again
                victim.signal(signal.SIGSTOP)

                async def out() -> bool:
                    return await setup.in_rotation() == 1

                await eventually(out, timeout=10, message="the stopped upstream leaves")
                victim.signal(signal.SIGCONT)

        counts = await load_with_a_stop(setup, stop)
        redelivered = await setup.metric("paradoxplex_redeliveries_total")
        suppressed = await setup.metric("paradoxplex_duplicates_suppressed_total", where="node")
        line = report(kind, counts, redelivered=redelivered, suppressed_at_node=suppressed)
        assert counts.exactly_once_in_order, line
        assert counts.sent > SOCKETS * 3, line  # the load ran on after the stop
        for reason in ("redelivery_exhausted", "retry_budget", "hold_timeout"):
            assert await setup.metric("paradoxplex_drops_total", reason=reason) == 0, reason
        for reason in ("link_bound", "node_bound"):
            assert await setup.metric("paradoxplex_at_most_once_total", reason=reason) == 0
        if kind == "sigkill":
            assert redelivered > 0, line  # the dead one held unacknowledged messages
        if kind == "sigterm":
            assert await victim.wait_exit(timeout=GRACE + 5) == 0, victim.tail()
        if kind == "sigstop":

            async def back() -> bool:
                return await setup.in_rotation() == 2

            await eventually(back, timeout=15, message="the woken upstream comes back")


@pytest.mark.parametrize("kind", ["sigkill", "sigterm", "drain", "sigstop"])
async def test_a_stopped_sdk_upstream_loses_and_doubles_nothing(kind: str) -> None:
    await sdk_fleet_case(kind)


async def test_an_original_proto_upstream_killed_loses_only_what_is_counted() -> None:
    upstreams = [echo("orig-a", "--original"), echo("orig-b", "--original")]
    async with running(upstreams) as setup:

        async def stop() -> None:
            setup.upstreams[0].signal(signal.SIGKILL)

        counts = await load_with_a_stop(setup, stop, answer_timeout=3.0)
        counted = await setup.metric("paradoxplex_at_most_once_total", reason="no_acks")
        line = report("original sigkill", counts, counted_no_acks=counted)
        assert counts.duplicates == counts.out_of_order == counts.foreign == 0, line
        assert counts.lost <= counted, line  # every loss counted (at most once)
        assert counts.answered > SOCKETS * 3, line


def poison_upstream(name: str, port: int) -> Proc:
    command = [sys.executable, "-m", "tests.e2e.poison_upstream", "--listen", f"127.0.0.1:{port}"]
    return Proc(name, command)


async def test_a_poison_message_is_dropped_after_max_deliveries_and_the_fleet_serves_on() -> None:
    """Each delivery of ``POISON`` crashes its upstream; a supervisor (this test) starts a
    crashed one again on its port. The third delivery is the last: dropped, counted, logged
    with its socket; meanwhile and afterwards other sockets are answered, every message once
    (those in flight with the poison at a crash are delivered again, not dropped with it)."""
    ports = [free_port(), free_port()]
    names = ["poison-a", "poison-b"]
    first = [poison_upstream(name, port) for name, port in zip(names, ports, strict=True)]
    restarts: list[Proc] = []
    async with running(first, "--max-deliveries", "3") as setup:
        current = dict(zip(names, first, strict=True))
        stop = asyncio.Event()

        async def supervise() -> None:
            while not stop.is_set():
                for name, port in zip(names, ports, strict=True):
                    if current[name].popen.poll() is not None:  # crashed: start it again at
                        again = poison_upstream(name, port)  # once (the node reconnects)
                        restarts.append(again)
                        current[name] = again
                await asyncio.sleep(0.05)  # a supervisor's poll, not a test's wait

        supervisor = asyncio.create_task(supervise())
        innocent = [await Client.connect(setup.node.listen, collect=True) for _ in range(5)]
        poisoned = await Client.connect(setup.node.listen, collect=True)
        try:
            load = asyncio.create_task(closed_loop(innocent, seconds=6.0, answer_timeout=30.0))
            await poisoned.send(b"POISON\n")

            async def dropped() -> bool:
                reason = "redelivery_exhausted"
                return await setup.metric("paradoxplex_drops_total", reason=reason) >= 1

            await eventually(dropped, timeout=30, message="the poison message is dropped")
            counts = tally(await load)
            exhausted = await setup.metric("paradoxplex_drops_total", reason="redelivery_exhausted")
            crashed = [p for p in [*first, *restarts] if p.popen.poll() == POISONED]
            line = report("poison", counts, exhausted=exhausted, crashes=len(crashed))
            assert len(crashed) == 3, line  # delivered 3 times: 3 crashes, then dropped
            # the messages in flight with it at a crash go again; at its last delivery it
            # travels alone, so it is the only one dropped
            assert exhausted == 1, line
            assert counts.exactly_once_in_order, line
            assert poisoned.tokens(b"\n") == []  # never answered
            after = await Client.connect(setup.node.listen, collect=True)
            try:
                await after.round_trip(b"after the poison\n", within=15)  # the fleet serves on
            finally:
                await after.aclose()
            assert b"redelivery_exhausted" in setup.node.stderr(), setup.node.tail()
        finally:
            stop.set()
            supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await supervisor
            await close_all([*innocent, poisoned])
            stop_all([*current.values(), *restarts])
