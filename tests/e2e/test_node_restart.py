"""A node restarted with the same ``--node-id`` is a new incarnation and leaves no ghost.

``paradoxplex node`` processes on one Redis (a prefix of the test's own) and ``upstream-echo``
processes, which log every lifecycle event. ``same-1`` holds three sockets and is SIGKILLed,
then started again at once with the same id and the same ports (as systemd, a StatefulSet or
compose's ``restart:`` do). From the restart on, both nodes' admin APIs are polled without a
pause: every listing, GET, node count and broadcast count that shows a socket of the killed
incarnation after the new one answered ready is a violation. Printed: how long after the
restart the last ghost was seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import orjson
import pytest
import pytest_asyncio

from tests.conftest import delete_prefix
from tests.support.client import Client, close_all
from tests.support.eventually import eventually
from tests.support.fleet import (
    PARADOXPLEX,
    Admin,
    NodeProc,
    Proc,
    echo_address,
    spawn_echo,
    spawn_node,
    stop_all,
)
from tests.support.ports import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SOCKETS = 3
#: How long the views are watched once the new incarnation answered ready.
WATCH_AFTER_READY = 3.0


def disconnected(echo: Proc, uuid: str, reason: str = "") -> int:
    """How many DISCONNECTED events for ``uuid`` the echo upstream logged (with ``reason``)."""
    line = rb"socket " + re.escape(uuid.encode()) + rb" disconnected"
    if reason:
        line += rb".*" + re.escape(reason.encode())
    return len(re.findall(line, echo.stderr()))


@dataclass
class Restart:
    """The processes of one test, and what it needs to reach them."""

    redis_url: str
    prefix: str
    http: aiohttp.ClientSession
    procs: list[Proc] = field(default_factory=list)
    clients: list[Client] = field(default_factory=list)
    upstream: str = ""
    echo: Proc | None = None

    def node(self, node_id: str, *extra: str) -> NodeProc:
        """A node with lifecycle events and the default ``node_ttl`` (10 s): a killed one's
        claim is still fresh when it is started again."""
        proc = spawn_node(
            self.redis_url,
            self.prefix,
            node_id,
            [self.upstream],
            "--lifecycle-events",
            "--node-ttl",
            "10",
            *extra,
        )
        self.procs.append(proc)
        return proc

    def admin(self, url: str) -> Admin:
        return Admin(url, self.http)

    async def connect(self, node: NodeProc) -> tuple[Client, str]:
        client = await Client.connect(node.listen, collect=True)
        self.clients.append(client)
        await client.round_trip(b"<hello>")
        return client, await self.admin(node.admin_url).uuid_of(client)


@pytest_asyncio.fixture
async def restart(redis_url: str, key_prefix: str) -> AsyncIterator[Restart]:
    async with aiohttp.ClientSession() as http:
        made = Restart(redis_url, key_prefix, http)
        try:
            made.echo = spawn_echo()
            made.procs.append(made.echo)
            made.upstream = await echo_address(made.echo)
            yield made
        finally:
            await close_all(made.clients)
            stop_all(made.procs)
            await delete_prefix(redis_url, key_prefix)


@dataclass
class Look:
    """One round of looking at one node's views: when it began and the ghosts it saw."""

    began: float
    where: str
    ghosts: list[str]


async def look(admin: Admin, node_id: str, old: set[str]) -> list[str]:
    """Every view of ``admin`` that shows a socket of ``old``, or ``node_id`` holding any
    socket (its new incarnation has none); empty when clean. Raises when the API is down."""
    seen: list[str] = []
    listed = await admin.socket_uuids()
    seen += [f"listed {uuid}" for uuid in sorted(listed & old)]
    active = await admin.socket_uuids("state=active")  # what a broadcast to active counts
    seen += [f"broadcast count {uuid}" for uuid in sorted(active & old)]
    seen += [f"node filter {uuid}" for uuid in sorted(await admin.socket_uuids(f"node={node_id}"))]
    for uuid in sorted(old):
        status, _ = await admin.call("GET", f"/v1/sockets/{uuid}")
        if status != 404:
            seen.append(f"GET {uuid} -> {status}")
    nodes = (await admin.ok("GET", "/v1/nodes"))["items"]
    seen += [
        f"{node_id} counts {item['sockets']}"
        for item in nodes
        if item["id"] == node_id and item["sockets"]
    ]
    return seen


class Watch:
    """Looks at every given admin API, round after round, until stopped."""

    def __init__(self, admins: list[Admin], node_id: str, old: set[str]) -> None:
        self.admins = admins
        self.node_id = node_id
        self.old = old
        self.looks: list[Look] = []
        self.stopped = asyncio.Event()

    async def run(self) -> None:
        while not self.stopped.is_set():
            for admin in self.admins:
                began = time.monotonic()
                try:
                    ghosts = await look(admin, self.node_id, self.old)
                except (aiohttp.ClientError, AssertionError):
                    continue  # not up yet (the new process), or between pages: look again
                self.looks.append(Look(began, admin.url, ghosts))
            await asyncio.sleep(0)

    def last_ghost(self) -> float | None:
        seen = [look.began for look in self.looks if look.ghosts]
        return max(seen) if seen else None

    def after(self, moment: float) -> list[Look]:
        return [look for look in self.looks if look.began >= moment]


async def first_ready(url: str, http: aiohttp.ClientSession, *, timeout: float) -> float:  # noqa: ASYNC109
    """When ``url``'s ``/readyz`` first answered 200 (the moment the answer came)."""
    answered: list[float] = []

    async def ready() -> bool:
        with contextlib.suppress(aiohttp.ClientError):
            async with http.get(url + "/readyz") as answer:
                if answer.status == 200:
                    answered.append(time.monotonic())
                    return True
        return False

    await eventually(ready, timeout=timeout, interval=0.01, message=f"{url} ready")
    return answered[0]


def fixed_ports() -> list[str]:
    listen, admin = free_port(), free_port()
    return ["--listen", f"127.0.0.1:{listen}", "--admin", f"127.0.0.1:{admin}"]


async def incarnation_of(admin: Admin, node_id: str) -> str:
    nodes = (await admin.ok("GET", "/v1/nodes"))["items"]
    [item] = [item for item in nodes if item["id"] == node_id]
    incarnation: str = item["incarnation"]
    return incarnation


async def test_a_node_restarted_with_its_id_leaves_no_ghost(restart: Restart) -> None:
    watcher = await restart.node("watch-1").started()
    ports = fixed_ports()
    first = await restart.node("same-1", *ports).started()
    near = restart.admin(watcher.admin_url)
    await eventually(
        lambda: _lists(near, {"watch-1", "same-1"}), timeout=10, message="both nodes listed"
    )
    doomed = [await restart.connect(first) for _ in range(SOCKETS)]
    old = {uuid for _, uuid in doomed}
    survivor, survivor_uuid = await restart.connect(watcher)
    assert old <= await near.socket_uuids()
    killed_incarnation = await incarnation_of(near, "same-1")

    first.kill()
    restarted = time.monotonic()
    second = restart.node("same-1", *ports)
    admin_url = f"http://{ports[3]}"
    watch = Watch([near, restart.admin(admin_url)], "same-1", old)
    watching = asyncio.create_task(watch.run())
    try:
        ready_at = await first_ready(admin_url, restart.http, timeout=20)
        await second.started()
        await asyncio.sleep(WATCH_AFTER_READY)  # the watch looks on meanwhile, without pause
    finally:
        watch.stopped.set()
        await watching
    violations = [look for look in watch.after(ready_at) if look.ghosts]
    last = watch.last_ghost()
    gone_after = (last - restarted) if last is not None else 0.0
    print(
        f"\nsame-1 restarted: ready {ready_at - restarted:.2f} s after the restart; last ghost "
        f"seen {gone_after:.2f} s after it; {len(watch.after(ready_at))} looks after ready, "
        f"{len(violations)} violations"
    )
    assert len(watch.after(ready_at)) >= 10, "the watch hardly looked after ready"
    assert not violations, violations[:5]

    new_incarnation = await incarnation_of(near, "same-1")
    assert new_incarnation != killed_incarnation
    assert f"took over from incarnation {killed_incarnation}".encode() in second.stderr()
    echo = restart.echo
    assert echo is not None
    await eventually(
        lambda: all(disconnected(echo, uuid, "node restarted") == 1 for uuid in old),
        timeout=10,
        message="a DISCONNECTED event for each socket of the killed incarnation",
    )
    # the broadcast reaches, and counts, the sockets that exist: one per node now
    newcomer, newcomer_uuid = await restart.connect(second)
    cli = await asyncio.create_subprocess_exec(
        PARADOXPLEX, "admin", "--url", second.admin_url, "--json",
        "broadcast", "all", "--text", "<to all>",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(cli.communicate(), timeout=20)
    assert cli.returncode == 0, err.decode()
    assert orjson.loads(out)["matched_fleet"] == 2
    for client in (survivor, newcomer):
        await client.expect(b"<to all>")
    assert await near.socket_uuids() == {survivor_uuid, newcomer_uuid}
    for uuid in old:
        assert disconnected(echo, uuid) == 1  # told once: by the new incarnation, no reaper


async def _lists(admin: Admin, node_ids: set[str]) -> bool:
    return await admin.node_ids() == node_ids


async def test_a_second_live_process_with_the_id_is_refused(restart: Restart) -> None:
    first = await restart.node("same-1").started()
    client, uuid = await restart.connect(first)
    second = restart.node("same-1")
    assert await second.wait_exit(timeout=20) == 2
    lines = second.stderr().decode().strip().splitlines()
    refusal = [line for line in lines if line.startswith("paradoxplex: --node-id:")]
    assert len(refusal) == 1, lines
    assert f"listener {first.listen}" in refusal[0]
    assert f"admin {first.admin_url}" in refusal[0]
    assert "Traceback" not in second.stderr().decode()
    assert second.stdout() == b""  # no start line
    # the first one never noticed
    admin = restart.admin(first.admin_url)
    assert uuid in await admin.socket_uuids()
    await admin.ok("POST", f"/v1/sockets/{uuid}/send", {"text": "<still here>"})
    await client.expect(b"<still here>")


async def test_a_stopped_holder_is_replaced_and_stops_when_it_resumes(restart: Restart) -> None:
    """SIGSTOP, not SIGKILL: the holder's admin API does not answer, so a new process with its
    id takes over (after the probe's second); when the old one resumes it finds its id taken,
    stops, and its leaving removes only its own records."""
    watcher = await restart.node("watch-1").started()
    old = await restart.node("same-1").started()
    near = restart.admin(watcher.admin_url)
    stale_client, stale = await restart.connect(old)
    old.signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        new = await restart.node("same-1").started()
        took = time.monotonic() - started
        assert stale not in await near.socket_uuids()
        status, _ = await near.call("GET", f"/v1/sockets/{stale}")
        assert status == 404
        fresh_client, fresh = await restart.connect(new)
    finally:
        old.signal(signal.SIGCONT)
    print(f"\na stopped holder was taken over in {took:.2f} s")
    assert await old.wait_exit(timeout=20) == 0
    assert b"was taken over by incarnation" in old.stderr()
    await stale_client.closed_by_peer(within=10)  # it closed its sockets as it stopped
    assert await near.socket_uuids() == {fresh}
    assert await incarnation_of(near, "same-1") == await incarnation_of(
        restart.admin(new.admin_url), "same-1"
    )
    await fresh_client.round_trip(b"<new incarnation serves>")
