"""The reconnect storm: thousands of sockets come back at once, each sends one message.

- ``fleet-2-nodes``: Redis, one ``upstream-echo``, nodes A and B (``--redis``); the loadgen
  (``loadgen storm``) connects ``sockets`` sockets to A, paced at ``rate`` per second, and
  each sends one 64-byte message. Measured from the first connect: the last answer, the last
  connect, and when B's admin API lists every one of them (``GET /v1/sockets?node=A``, page
  by page, checked with ``GET /v1/sockets/{uuid}`` for a sample). The listing is read only
  once Redis's set of A's sessions (one ``ZCARD`` per poll) is full, so polling costs the
  fleet almost nothing until then; the time reported is when a full listing came back (an
  upper bound, the ``ZCARD`` time is the lower one).
- ``haproxy``: the same storm through HAProxy (one thread) in front of the C echo server.

Connections/s is the sockets answered over the time to the last answer: with the storm
paced at ``rate``, a system that keeps up shows about ``rate`` (``pace-bound`` in the notes).
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from bench.measure import wait_count
from bench.procs import BenchError, Proc, Procs, build, read_event, send_line
from bench.profile import start_recording
from bench.report import Row
from bench.systems import (
    RedisServer,
    System,
    haproxy_system,
    http_get,
    launch_node,
    start_redis,
    start_upstream_echo,
    wait_round_trip,
)
from paradoxplex.shared.keys import Keys

PREFIX = "benchstorm"
FIND_LIMIT = 30.0  # seconds after the storm's start to wait for B to list every socket
SAMPLE = 20  # uuids checked one by one on B
PAGE = 1000  # the admin API's largest page


@dataclass
class Storm:
    """What ``loadgen storm`` reported, plus when the other node found every socket."""

    answered: dict[str, object]
    findable_s: float | None = None
    registered_s: float | None = None  # Redis held every session (lower bound)
    sampled: int = 0
    notes: list[str] = field(default_factory=list)


def _event(loadgen: Proc, name: str, timeout: float) -> dict[str, object]:
    event = read_event(loadgen, timeout)
    if event.get("event") != name:
        raise BenchError(f"loadgen: expected {name!r}, got {str(event)[:300]}")
    return event


def _number(event: dict[str, object], key: str) -> float:
    value = event.get(key)
    return float(value) if isinstance(value, int | float) else 0.0


def start_storm(
    procs: Procs, name: str, target: str, sockets: int, rate: float, wait: float
) -> tuple[Proc, float]:
    """Start ``loadgen storm``; returns it once its first connect is made, with that
    monotonic time. Its sockets are held until ``end_storm``."""
    argv = [str(build("loadgen")), "storm", "-a", target, "-c", str(sockets), "-s", "64"]
    argv += ["-r", str(rate), "-C", "4096", "-d", str(wait), "-t", "120"]
    loadgen = procs.start(f"loadgen-storm-{name}", argv, pipes=True)
    try:
        _event(loadgen, "start", 10)
    except BaseException:
        loadgen.stop(1.0)
        raise
    return loadgen, time.monotonic()


def end_storm(loadgen: Proc) -> None:
    """Release the storm's sockets."""
    try:
        send_line(loadgen)
        _event(loadgen, "result", 30)
    finally:
        loadgen.stop(2.0)


class Finder(threading.Thread):
    """Polls, from the storm's start, until node B's admin API lists ``expected`` sockets of
    node A (``expected`` may be lowered once the storm says how many connected)."""

    def __init__(
        self, redis: RedisServer, admin_b: str, node_a: str, expected: int, started: float
    ) -> None:
        super().__init__(daemon=True)
        self.redis, self.admin_b, self.node_a = redis, admin_b, node_a
        self.expected = expected
        self.started = started
        self.registered_s: float | None = None
        self.findable_s: float | None = None
        self.sampled = 0
        self.error = ""

    def run(self) -> None:
        key = Keys(PREFIX).node_sessions(self.node_a, 0)  # one Redis: one bucket
        try:
            while time.monotonic() - self.started < FIND_LIMIT:
                if int(self.redis.client.zcard(key)) < self.expected:
                    time.sleep(0.02)
                    continue
                if self.registered_s is None:
                    self.registered_s = time.monotonic() - self.started
                uuids = self._listing()
                if len(uuids) >= self.expected:
                    self.findable_s = time.monotonic() - self.started
                    self.sampled = self._sample(uuids)
                    return
        except Exception as error:  # a thread's boundary: reported, not raised
            self.error = f"{type(error).__name__}: {error}"

    def _listing(self) -> list[str]:
        """Every uuid B lists for node A, page by page."""
        uuids: list[str] = []
        cursor = ""
        for _ in range(self.expected // PAGE + 10):
            url = f"{self.admin_b}/v1/sockets?node={self.node_a}&limit={PAGE}{cursor}"
            status, body = http_get(url, timeout=10)
            if status != 200:
                raise BenchError(f"GET {url}: {status} {body[:200]!r}")
            page = orjson.loads(body)
            uuids += [item["uuid"] for item in page["items"]]
            if not page.get("cursor"):
                break
            cursor = f"&cursor={page['cursor']}"
        return uuids

    def _sample(self, uuids: list[str]) -> int:
        """How many of ``SAMPLE`` random uuids ``GET /v1/sockets/{uuid}`` finds on B."""
        chosen = random.sample(uuids, min(SAMPLE, len(uuids)))
        found = [http_get(f"{self.admin_b}/v1/sockets/{uuid}")[0] == 200 for uuid in chosen]
        return sum(found)


def fleet_storm(
    procs: Procs, sockets: int, rate: float, wait: float, *, profile: Path | None = None
) -> Storm:
    """The storm on node A of a 2-node fleet; with ``profile``, py-spy samples A for the
    storm's first seconds into that file."""
    redis = start_redis(procs)
    upstream, address = start_upstream_echo(procs, "storm-upstream")
    launched = [
        launch_node(
            procs,
            f"storm-{tag}",
            [address],
            redis_url=redis.url,
            node_id=f"storm-{tag}",
            key_prefix=PREFIX,
        )
        for tag in ("a", "b")
    ]
    nodes = [node.wait_ready() for node in launched]
    system = System("storm", [nodes[0].listen], [n.proc for n in nodes], [upstream])
    wait_round_trip(system, [*system.proxy, upstream], timeout=30, tries=2)
    # the check's sockets leave the fleet's list first: the storm's are all it holds
    key = Keys(PREFIX).node_sessions("storm-a", 0)  # one Redis: one bucket
    wait_count(lambda: int(redis.client.zcard(key)), lambda n: n == 0, timeout=10)
    if profile is not None:
        spy = start_recording(procs, "py-spy-storm", nodes[0].proc, profile, sockets / rate + 2)
    loadgen, started = start_storm(procs, "fleet", nodes[0].listen, sockets, rate, wait)
    finder = Finder(redis, nodes[1].admin[0], "storm-a", sockets, started)
    finder.start()
    try:
        answered = _event(loadgen, "answered", wait + 10)
        connected = int(_number(answered, "connected") - _number(answered, "closed"))
        finder.expected = connected
        finder.join(FIND_LIMIT + 30)
    finally:
        end_storm(loadgen)
    if profile is not None:
        spy.popen.wait(30)
    storm = Storm(answered, finder.findable_s, finder.registered_s, finder.sampled)
    if finder.error:
        storm.notes.append(finder.error)
    if finder.findable_s is None:
        storm.notes.append(f"B did not list all {connected} sockets within {FIND_LIMIT:g} s")
    return storm


def haproxy_storm(procs: Procs, sockets: int, rate: float, wait: float, *, maxconn: int) -> Storm:
    system = haproxy_system(procs, maxconn=maxconn)
    loadgen, _ = start_storm(procs, "haproxy", system.targets[0], sockets, rate, wait)
    try:
        answered = _event(loadgen, "answered", wait + 10)
    finally:
        end_storm(loadgen)
    return Storm(answered)


def storm_rows(name: str, storm: Storm, rate: float) -> list[Row]:
    """Rows: all answered, all connected, all findable (fleet), connections/s."""
    got = storm.answered
    count = int(_number(got, "answered"))
    answer_s = _number(got, "answer_s")
    detail = {k: v for k, v in got.items() if k not in ("event", "answers")}
    detail["rate"] = rate
    missing = count < _number(got, "conns")
    problems = [*storm.notes]
    if missing:
        problems.append(f"{count} of {int(_number(got, 'conns'))} answered")
    rows = [
        Row("storm", name, count, metric="all answered", value=answer_s, unit="s"),
        Row("storm", name, count, metric="all connected", unit="s"),
        Row("storm", name, count, metric="answer p99", unit="ms"),
    ]
    rows[1].value = _number(got, "connect_s")
    rows[2].value = _number(got, "p99_us") / 1000
    if name != "haproxy":
        find = Row("storm", name, count, metric="all findable on B", value=storm.findable_s)
        find.unit = "s"
        find.detail = {"registered_s": storm.registered_s, "sampled_found": storm.sampled}
        if storm.findable_s is None:
            find.error = "; ".join(problems)
        rows.append(find)
    per_s = Row("storm", name, count, metric="connections/s", unit="conns/s")
    per_s.value = count / answer_s if answer_s > 0 else None
    if rate and answer_s <= 1.05 * _number(got, "conns") / rate:
        per_s.detail["note"] = "pace-bound"
    rows.append(per_s)
    rows[0].detail["answers_per_10ms"] = got.get("answers")  # the chart of arrivals
    for row in rows:
        row.detail = {**detail, **row.detail}
        if problems and not row.error:
            row.detail["note"] = "; ".join([*problems, str(row.detail.get("note", ""))]).strip("; ")
    if missing:
        rows[0].error = "; ".join(problems)
    return rows
