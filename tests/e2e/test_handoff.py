"""Hot handoff with real processes: ``paradoxplex node --handoff-socket PATH`` and a second
``paradoxplex node <same flags> --take-over PATH``, real ``upstream-echo`` upstreams, real
Redis, real client sockets.

What a client must not notice: no socket closed, every request answered exactly once, replies
back within a second, the same uuids with the same owner in the admin API, a paused and
labelled socket still paused and labelled, a socket in the middle of a frame keeping it, and
new sockets served by the new process while the old one exits 0. What the old process must do
when the new one dies at any step, the path vanishes or the terms differ: serve on, untouched.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import ssl
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families

from paradoxplex.upstream import Message, Outbox
from tests.conftest import delete_prefix
from tests.support.client import Client
from tests.support.closed_loop import (
    Counts,
    Loop,
    answered_after,
    closed_loop,
    tally,
    worst_after,
)
from tests.support.eventually import eventually
from tests.support.fleet import (
    PARADOXPLEX,
    Admin,
    NodeProc,
    Proc,
    echo_address,
    pid_gone,
    spawn_echo,
    start_upstream,
)
from tests.support.tls import self_signed

# slow as a whole: each test starts two upstreams and two node processes (3 s and more)
pytestmark = [pytest.mark.e2e, pytest.mark.slow]

#: Replies must come back within this long of the handoff (the issue's bound).
RESUME_WITHIN = 1.0


@dataclass
class Upgrade:
    """Starts nodes as a user would, on a handoff socket path of their own."""

    workdir: Path
    upstreams: list[str]
    http: aiohttp.ClientSession
    procs: list[Proc] = field(default_factory=list)

    @property
    def path(self) -> str:
        return str(self.workdir / "handoff.sock")

    def args(self, node_id: str, *extra: str, redis: str = "", prefix: str = "") -> list[str]:
        args = [
            "--node-id", node_id, "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
            "--drain-grace", "1", "--heartbeat", "0.5", "--node-ttl", "3",
        ]  # fmt: skip
        if redis:
            args += ["--redis", redis, "--key-prefix", prefix]
        for upstream in self.upstreams:
            args += ["--upstream", upstream]
        return [*args, *extra]

    async def node(self, args: Sequence[str], name: str = "old") -> NodeProc:
        proc = NodeProc(name, [PARADOXPLEX, "node", *args])
        self.procs.append(proc)
        return await proc.started()

    def successor(self, args: Sequence[str], name: str = "new") -> NodeProc:
        proc = NodeProc(name, [PARADOXPLEX, "node", *args, "--take-over", self.path])
        self.procs.append(proc)
        return proc

    def peer(self, stop: str, args: Sequence[str]) -> Proc:
        """A new process that dies (or hangs) at ``stop`` (``tests.support.handoff_peer``)."""
        command = [sys.executable, "-m", "tests.support.handoff_peer", self.path, stop, *args]
        proc = Proc(f"peer-{stop}", command, env={"PYTHONPATH": str(Path.cwd())})
        self.procs.append(proc)
        return proc

    def admin(self, proc: NodeProc) -> Admin:
        return Admin(proc.admin_url, self.http)

    async def metric(self, proc: NodeProc, name: str, **labels: str) -> float:
        async with self.http.get(proc.admin_url + "/metrics") as answer:
            text = await answer.text()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    return float(sample.value)
        raise AssertionError(f"no {name} {labels} in /metrics")


@pytest_asyncio.fixture
async def upgrade() -> AsyncIterator[Upgrade]:
    echoes = [spawn_echo("echo1"), spawn_echo("echo2")]
    http = aiohttp.ClientSession()
    with tempfile.TemporaryDirectory(prefix="paradoxplex-handoff-") as workdir:
        made = Upgrade(Path(workdir), [], http, list(echoes))
        try:
            made.upstreams = [await echo_address(echo) for echo in echoes]
            yield made
        finally:
            await http.close()
            for proc in made.procs:
                proc.kill()


@dataclass
class Looping:
    """Clients in a closed loop (``tests.support.closed_loop``), running until ``finish``."""

    clients: list[Client]
    loops: list[Loop]
    stop: asyncio.Event
    task: asyncio.Future[list[Loop]]

    @classmethod
    async def start(cls, address: str, count: int, *, answer_timeout: float = 10.0) -> Looping:
        clients = [await Client.connect(address, collect=True) for _ in range(count)]
        loops: list[Loop] = []
        stop = asyncio.Event()
        running = closed_loop(clients, until=stop, answer_timeout=answer_timeout, loops=loops)
        return cls(clients, loops, stop, asyncio.ensure_future(running))

    @property
    def answered(self) -> int:
        return sum(len(loop.times) for loop in self.loops)

    async def finish(self) -> Counts:
        """Stop; what became of every request, once a late repeat had time to arrive; no
        socket may have been closed."""
        self.stop.set()
        await self.task
        await asyncio.sleep(0.5)  # a window for a reply delivered twice, not a wait for a state
        assert not any(client.eof for client in self.clients)
        return tally(self.loops)

    async def close(self) -> None:
        self.stop.set()
        if not self.task.done():
            self.task.cancel()
        for client in self.clients:
            await client.aclose()


async def labelled_and_paused(admin: Admin, client: Client) -> str:
    uuid = await admin.uuid_of(client)
    await admin.ok("PUT", f"/v1/sockets/{uuid}/labels", {"site": "east"})
    await admin.ok("POST", f"/v1/sockets/{uuid}/pause")
    return uuid


async def test_a_handoff_under_a_closed_loop_loses_nothing(
    upgrade: Upgrade, redis_url: str, key_prefix: str
) -> None:
    """200 sockets in a closed loop through a node with 2 upstreams and a fleet peer; a
    handoff at 3 s. The issue's list, every item."""
    args = upgrade.args("h1", "--handoff-socket", upgrade.path, redis=redis_url, prefix=key_prefix)
    old = await upgrade.node(args)
    peer = await upgrade.node(upgrade.args("h2", redis=redis_url, prefix=key_prefix), "h2")
    admin, other = upgrade.admin(old), upgrade.admin(peer)
    loop = asyncio.get_running_loop()
    clients = await Looping.start(old.listen, 200)
    try:
        quiet = await Client.connect(old.listen, collect=True)
        paused = await labelled_and_paused(admin, quiet)
        await quiet.send(b"sent while paused\n")
        listeners = [await Client.connect(old.listen, collect=True) for _ in range(5)]
        targets = [await admin.uuid_of(listener) for listener in listeners]
        before = {item["uuid"]: item["node"] for item in await admin.sockets()}
        assert len(before) == 206
        assert set(before.values()) == {"h1"}
        incarnation = (await admin.ok("GET", "/livez"))["incarnation"]
        through_h2 = Sending(other, targets)
        await asyncio.sleep(3.0)  # the load runs for 3 s before the handoff
        listed: list[int] = []  # what the peer lists, without pause, across the switch
        watching = asyncio.create_task(_watch_count(other, listed))
        new = upgrade.successor(args)
        await new.started()
        switched = loop.time()
        assert await old.wait_exit(timeout=15) == 0, old.tail()
        await eventually(lambda: answered_after(clients.loops, switched) >= 2000, timeout=10)
        watching.cancel()
        await asyncio.gather(watching, return_exceptions=True)
        assert len(listed) > 3, listed
        assert set(listed) == {206}, listed  # the fleet never missed one
        counts = await clients.finish()
        sent = await through_h2.stop()
        for index, listener in enumerate(listeners):  # each once, in order, across the switch
            wanted = [b"bus-%d" % n for n in range(index, sent, len(listeners))]
            await eventually(received(listener, wanted), timeout=10)
        assert counts.exactly_once_in_order, counts
        assert worst_after(clients.loops, switched - 2.0) < RESUME_WITHIN
        after = {item["uuid"]: item["node"] for item in await admin.sockets()}
        assert after == before
        assert {item["uuid"]: item["node"] for item in await other.sockets()} == before
        record = await admin.ok("GET", f"/v1/sockets/{paused}")
        assert (record["state"], record["labels"]) == ("paused", {"site": "east"})
        assert quiet.count(b"sent while paused") == 0
        await admin.ok("POST", f"/v1/sockets/{paused}/resume")
        await quiet.expect(b"sent while paused\n")
        async with await Client.connect(old.listen) as fresh:  # the same address, a new process
            await fresh.round_trip(b"a new socket\n")
        nodes = (await admin.ok("GET", "/v1/nodes"))["items"]
        h1 = next(node for node in nodes if node["id"] == "h1")
        handoff = h1["last_handoff"]
        assert handoff["from_pid"] == old.pid
        # the node id stays, the incarnation changes (and no socket went missing on the way)
        assert h1["incarnation"] != incarnation
        assert (await admin.ok("GET", "/livez"))["incarnation"] == h1["incarnation"]
        assert (handoff["moved"], handoff["kept"]) == (206, 0)
        assert await upgrade.metric(new, "paradoxplex_handoffs_total", outcome="done") == 1
        assert await upgrade.metric(new, "paradoxplex_handoff_sockets_total", fate="moved") == 206
        for proc in (new, peer):
            assert await upgrade.metric(proc, "paradoxplex_bus_gaps_total") == 0
            assert await upgrade.metric(proc, "paradoxplex_bus_duplicates_total") == 0
        await quiet.aclose()
        for listener in listeners:
            await listener.aclose()
    finally:
        await clients.close()
        await delete_prefix(redis_url, key_prefix)


async def _watch_count(admin: Admin, listed: list[int]) -> None:
    """How many sockets ``admin`` lists, again and again until cancelled."""
    while True:
        listed.append(len(await admin.sockets()))


def received(client: Client, wanted: list[bytes]) -> Callable[[], bool]:
    return lambda: client.tokens(b"\n") == wanted


class Sending:
    """Numbered admin sends through another node, round robin over sockets: each command goes
    through the bus to the owner (the old process or the new) and its answer comes back the
    same way. A send that answers 503 or 504 is retried with its key until it answers 200."""

    def __init__(self, other: Admin, targets: list[str], *, pace: float = 0.01) -> None:
        self.other = other
        self.targets = targets
        self.pace = pace
        self.sent = 0
        self._stop = asyncio.Event()
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while not self._stop.is_set():
            number = self.sent
            uuid = self.targets[number % len(self.targets)]
            url = f"{self.other.url}/v1/sockets/{uuid}/send"
            body, headers = {"text": f"bus-{number}\n"}, {"Idempotency-Key": f"bus-{number}"}
            while True:
                async with self.other.session.post(url, json=body, headers=headers) as answer:
                    if answer.status == 200:
                        break
                    assert answer.status in (503, 504), await answer.text()
            self.sent = number + 1
            await asyncio.sleep(self.pace)  # a pace, not a wait for a state

    async def stop(self) -> int:
        """Stop after the send under way; how many were sent."""
        self._stop.set()
        await self._task
        return self.sent


async def test_a_socket_in_the_middle_of_a_length_prefixed_frame_keeps_it(
    upgrade: Upgrade,
) -> None:
    args = upgrade.args("h1", "--framing", "length", "--handoff-socket", upgrade.path)
    old = await upgrade.node(args)
    payload = b"twenty bytes payload"
    admin = upgrade.admin(old)
    async with await Client.connect(old.listen) as client:
        await client.send(len(payload).to_bytes(4, "big") + payload[:8])

        async def read_by_the_old_process() -> bool:
            return [s["bytes_in"] for s in await admin.sockets()] == [12]

        await eventually(read_by_the_old_process, message="12 bytes read")
        new = upgrade.successor(args)
        await new.started()
        assert await old.wait_exit() == 0, old.tail()
        await client.send(payload[8:])
        assert await client.receive_exactly(len(payload)) == payload
        await client.send((3).to_bytes(4, "big") + b"one")
        assert await client.receive_exactly(3) == b"one"
        assert [s["bytes_in"] for s in await admin.sockets()] == [31]


async def still_serving(old: NodeProc, clients: Looping, admin: Admin, count: int) -> None:
    """Every socket answers again, and the admin API lists them all."""
    answered = clients.answered
    await eventually(lambda: clients.answered >= answered + 5 * len(clients.loops), timeout=10)
    assert not clients.task.done()  # no loop stopped: nothing lost
    assert len(await admin.sockets()) == count
    status, ready = await admin.call("GET", "/readyz")  # and says so to a load balancer
    assert (status, ready.get("ready"), ready.get("listening")) == (200, True, True), ready


async def test_the_old_process_serves_on_whenever_the_new_one_fails(
    upgrade: Upgrade, redis_url: str, key_prefix: str
) -> None:
    """The new process dies after its hello, while the old one freezes, in the middle of the
    transfer and before committing; it is killed while preparing; it hangs until the old one
    times out; the path vanishes; the terms differ. Each time the old process serves every
    socket on (none closed, all answered, all listed) and counts the outcome; then a real
    handoff still works."""
    args = upgrade.args("h1", "--handoff-socket", upgrade.path, redis=redis_url, prefix=key_prefix)
    old = await upgrade.node(args)
    admin = upgrade.admin(old)
    # a hung new process freezes them for LIMITS[COMMIT]: they wait longer than that
    clients = await Looping.start(old.listen, 20, answer_timeout=30.0)
    try:
        for stop, outcome in [
            ("hello", "untouched"),
            ("ready", "thawed"),
            ("transfer", "thawed"),
            ("done", "thawed"),
        ]:
            peer = upgrade.peer(stop, args)
            assert await peer.wait_exit(timeout=20) == 9, peer.tail()
            await eventually(
                _counter(upgrade, old, outcome), timeout=10, message=f"{stop}: {outcome}"
            )
            await still_serving(old, clients, admin, 20)

        failed = await _failures(upgrade, old)
        killed = upgrade.successor(args, "killed")  # killed while it prepares, or just after
        taking = b"pid %d (version" % killed.pid
        await eventually(lambda: taking in old.stderr(), timeout=20, message="it connects")
        killed.kill()
        await eventually(lambda: _failed_more(upgrade, old, failed), timeout=15)
        await still_serving(old, clients, admin, 20)

        failed = await _failures(upgrade, old)
        hung = upgrade.peer("hang", args)
        await hung.wait_line(re.compile(rb"handoff peer: done"), timeout=20)
        await eventually(lambda: _failed_more(upgrade, old, failed), timeout=20)
        await still_serving(old, clients, admin, 20)
        hung.kill()

        refused = upgrade.successor(
            [*upgrade.args("h1", redis=redis_url, prefix=key_prefix), "--framing", "line"],
            "refused",
        )
        assert await refused.wait_exit() == 2
        assert b"--take-over: handoff refused: different --framing" in refused.stderr()
        assert refused.stderr().count(b"\n") == 1, refused.stderr()
        await eventually(lambda: _counted(upgrade, old, "refused", 1), timeout=5)

        os.rename(upgrade.path, upgrade.path + ".moved")  # the path vanishes
        lost = upgrade.successor(args, "lost")
        assert await lost.wait_exit() == 1
        assert b"cannot reach" in lost.stderr()
        os.rename(upgrade.path + ".moved", upgrade.path)
        await still_serving(old, clients, admin, 20)

        new = upgrade.successor(args)
        await new.started()
        assert await old.wait_exit(timeout=15) == 0
        await still_serving(new, clients, upgrade.admin(new), 20)
        counts = await clients.finish()
        assert counts.exactly_once_in_order, counts
    finally:
        await clients.close()
        await delete_prefix(redis_url, key_prefix)


async def _counted(upgrade: Upgrade, old: NodeProc, outcome: str, times: int = 1) -> bool:
    return await upgrade.metric(old, "paradoxplex_handoffs_total", outcome=outcome) >= times


def _counter(upgrade: Upgrade, old: NodeProc, outcome: str) -> Callable[[], Awaitable[bool]]:
    return lambda: _counted(upgrade, old, outcome)


async def _failures(upgrade: Upgrade, old: NodeProc) -> float:
    total = 0.0
    for outcome in ("untouched", "thawed"):
        total += await upgrade.metric(old, "paradoxplex_handoffs_total", outcome=outcome)
    return total


async def _failed_more(upgrade: Upgrade, old: NodeProc, before: float) -> bool:
    return await _failures(upgrade, old) > before


async def test_sigusr2_upgrades_in_place_and_tells_systemd(
    upgrade: Upgrade, tmp_path: Path
) -> None:
    """The systemd unit's upgrade: SIGUSR2 starts the program on disk with ``--take-over``;
    it tells systemd (``NOTIFY_SOCKET``) that it is the main process now; the old one exits 0
    and every socket stays."""
    loop = asyncio.get_running_loop()
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.setblocking(False)
    args = upgrade.args("h1", "--handoff-socket", upgrade.path)
    old = NodeProc("old", [PARADOXPLEX, "node", *args], env={"NOTIFY_SOCKET": notify.getsockname()})
    upgrade.procs.append(old)
    new_pid = 0
    try:
        await old.started()
        async with asyncio.timeout(10):
            assert await loop.sock_recv(notify, 4096) == b"READY=1"
        async with await Client.connect(old.listen) as client:
            await client.round_trip(b"before\n")
            old.signal(signal.SIGUSR2)
            async with asyncio.timeout(30):
                said = (await loop.sock_recv(notify, 4096)).decode().split("\n")
            assert said[1] == "READY=1"
            new_pid = int(said[0].removeprefix("MAINPID="))
            assert new_pid != old.pid
            assert await old.wait_exit() == 0, old.tail()
            await client.round_trip(b"after\n")
        async with await Client.connect(old.listen) as fresh:
            await fresh.round_trip(b"new\n")
    finally:
        notify.close()
        if new_pid:
            os.kill(new_pid, signal.SIGTERM)
            await eventually(lambda: pid_gone(new_pid), timeout=15, message="the new process")


async def test_tls_sockets_stay_with_the_old_process_and_drain(
    upgrade: Upgrade, tmp_path: Path
) -> None:
    """A TLS session cannot leave its process: the old one keeps its TLS sockets and drains
    them; meanwhile the new one lists them and relays an admin send to them; then they close,
    leave the listing, and the old process exits 0. New TLS sockets go to the new process."""
    cert, key = self_signed(tmp_path)
    context = ssl.create_default_context(cafile=str(cert))
    tls = ["--tls-cert", str(cert), "--tls-key", str(key), "--drain-grace", "3"]
    args = upgrade.args("h1", *tls, "--handoff-socket", upgrade.path)
    old = await upgrade.node(args)
    admin = upgrade.admin(old)
    kept = await Client.connect(old.listen, ssl=context, collect=True)
    try:
        await kept.round_trip(b"before\n")
        uuid = await admin.uuid_of(kept)
        new = upgrade.successor(args)
        await new.started()
        await kept.round_trip(b"during the drain\n")  # still the old process's
        assert await admin.socket_uuids() == {uuid}  # listed by the new one
        await admin.ok("POST", f"/v1/sockets/{uuid}/send", {"text": "relayed\n"})
        await kept.expect(b"relayed\n")
        async with await Client.connect(old.listen, ssl=context) as fresh:
            await fresh.round_trip(b"new tls socket\n")
        await kept.closed_by_peer(within=10)  # closed by the old process, once drained
        assert await old.wait_exit(timeout=15) == 0, old.tail()

        async def unlisted() -> bool:
            return uuid not in await admin.socket_uuids()

        await eventually(unlisted, timeout=5, message="the drained socket leaves the listing")
        assert await upgrade.metric(new, "paradoxplex_handoff_sockets_total", fate="kept") == 1
    finally:
        await kept.aclose()


async def test_a_proxied_socket_keeps_the_address_its_header_gave(upgrade: Upgrade) -> None:
    """After its PROXY header a socket is plain TCP: it moves, and keeps the remote address
    the header gave (the new process never sees the header)."""
    args = upgrade.args("h1", "--proxy-protocol", "--handoff-socket", upgrade.path)
    old = await upgrade.node(args)
    admin = upgrade.admin(old)
    header = b"PROXY TCP4 203.0.113.7 192.0.2.1 4242 7999\r\n"
    async with await Client.connect(old.listen, header=header) as client:
        await client.round_trip(b"before\n")

        async def listed() -> bool:
            return [s["remote"] for s in await admin.sockets()] == ["203.0.113.7:4242"]

        await eventually(listed, message="the header's address")
        new = upgrade.successor(args)
        await new.started()
        assert await old.wait_exit() == 0, old.tail()
        await client.round_trip(b"after\n")
        assert [s["remote"] for s in await admin.sockets()] == ["203.0.113.7:4242"]


async def test_an_admin_retry_after_the_handoff_replays_instead_of_acting_again(
    upgrade: Upgrade,
) -> None:
    """The idempotency keys of commands on the sockets move with them: the same keyed send
    through the new process answers as the first did and writes nothing again."""
    args = upgrade.args("h1", "--handoff-socket", upgrade.path)
    old = await upgrade.node(args)
    admin = upgrade.admin(old)
    async with await Client.connect(old.listen, collect=True) as client:
        uuid = await admin.uuid_of(client)
        url = f"{old.admin_url}/v1/sockets/{uuid}/send"
        headers = {"Idempotency-Key": "send-once-1"}
        async with upgrade.http.post(url, json={"text": "once\n"}, headers=headers) as first:
            assert first.status == 200
            assert "Idempotent-Replayed" not in first.headers
        await client.expect(b"once\n")
        new = upgrade.successor(args)
        await new.started()
        assert await old.wait_exit() == 0, old.tail()
        async with upgrade.http.post(url, json={"text": "once\n"}, headers=headers) as again:
            assert again.status == 200
            assert again.headers.get("Idempotent-Replayed") == "true"
        await client.round_trip(b"still here\n")
        assert client.count(b"once\n") == 1


async def test_a_second_successor_during_a_handoff_is_refused(upgrade: Upgrade) -> None:
    """One handoff at a time: a process that connects while one is under way is refused at
    once; the first one's handoff goes on."""
    args = upgrade.args("h1", "--handoff-socket", upgrade.path)
    old = await upgrade.node(args)
    hung = upgrade.peer("hang", args)  # holds the old process frozen until it times out
    await hung.wait_line(re.compile(rb"handoff peer: done"), timeout=20)
    second = upgrade.successor(args, "second")
    assert await second.wait_exit(timeout=10) == 2, second.tail()
    assert b"a handoff is already under way" in second.stderr()
    hung.kill()
    async with await Client.connect(old.listen) as client:  # the old one thawed and serves
        await client.round_trip(b"still old\n", within=15)
    assert await upgrade.metric(old, "paradoxplex_handoffs_total", outcome="refused") == 1


class Numbers:
    """An SDK upstream's handler that echoes and keeps each message's delivery id."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int, int]] = []

    def __call__(self, message: Message, out: Outbox) -> None:
        self.seen.append((message.client_uuid, message.seq, message.attempt))
        out.reply(message.client_uuid, message.payload)


async def test_a_socket_numbers_on_across_the_handoff(upgrade: Upgrade) -> None:
    """Acknowledged delivery: the new process numbers a socket's messages on from where the
    old one stopped (its delivery ids never repeat: the SDK would take a repeat for a
    redelivery), every message delivered once."""
    numbers = Numbers()
    upstream, address = await start_upstream(numbers)
    upgrade.upstreams = [str(address)]
    try:
        args = upgrade.args("h1", "--framing", "line", "--handoff-socket", upgrade.path)
        old = await upgrade.node(args)
        async with await Client.connect(old.listen, collect=True) as client:
            for n in range(20):
                await client.round_trip(b"before %d\n" % n, reply=b"before %d" % n)
            new = upgrade.successor(args)
            await new.started()
            assert await old.wait_exit() == 0, old.tail()
            for n in range(20):
                await client.round_trip(b"after %d\n" % n, reply=b"after %d" % n)
        seqs = [seq for _, seq, _ in numbers.seen]
        assert seqs == list(range(1, 41))
        assert {attempt for _, _, attempt in numbers.seen} == {1}
    finally:
        await upstream.stop()
