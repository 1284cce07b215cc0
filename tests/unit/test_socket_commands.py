"""The owner's side of admin commands: a key acts once on this node, whoever asks and how
often; the rest replay the first answer (without the record), another request is refused."""

from __future__ import annotations

from typing import cast

from paradoxplex.node.delivery.commands import Answer, SocketCommands
from paradoxplex.node.metrics import Metrics
from paradoxplex.node.sockets.session import Session
from paradoxplex.shared.idempotency import fingerprint
from paradoxplex.shared.sessions import SessionInfo
from paradoxplex.wire import bus_pb2

UUID = "0f8fad5b-d9cb-469f-a165-70867728950e"


class RecordedSession:
    """What ``SocketCommands`` calls on a session, recorded."""

    def __init__(self) -> None:
        self.info = SessionInfo(UUID, "node-a", "10.0.0.1:5000", 1.0)
        self.written: list[bytes] = []
        self.paused: list[bool] = []
        self.accept = True

    def write(self, payload: bytes) -> bool:
        if self.accept:
            self.written.append(payload)
        return self.accept

    def set_paused(self, paused: bool) -> None:
        self.paused.append(paused)

    def close(self, reason: str) -> None:
        raise AssertionError("not closed in these tests")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def commands(session: RecordedSession, clock: Clock | None = None) -> SocketCommands:
    written: list[SessionInfo] = []

    async def write(info: SessionInfo) -> None:
        written.append(info)

    sessions = {UUID: cast(Session, session)}
    return SocketCommands(sessions, write=write, metrics=Metrics(), clock=clock or Clock())


def send(payload: bytes, key: str = "") -> bus_pb2.Command:
    asked = fingerprint("send", UUID, payload) if key else b""
    return bus_pb2.Command(
        action="send", client_uuid=UUID, payload=payload, idempotency_key=key, fingerprint=asked
    )


def count(owner: SocketCommands, event: str) -> float:
    value = owner.metrics.registry.get_sample_value(
        "paradoxplex_idempotency_total", {"event": event}
    )
    return value or 0.0


async def test_a_key_writes_once_and_replays_the_answer_without_the_record() -> None:
    session = RecordedSession()
    owner = commands(session)
    first = await owner.apply(send(b"x", "k"))
    assert (first.status, first.replayed) == ("ok", False)
    assert first.body.startswith(b"{")
    assert await owner.apply(send(b"x", "k")) == Answer("ok", b"", replayed=True)
    assert session.written == [b"x"]
    assert count(owner, "replayed") == 1


async def test_a_key_with_another_payload_is_refused() -> None:
    session = RecordedSession()
    owner = commands(session)
    await owner.apply(send(b"x", "k"))
    assert await owner.apply(send(b"y", "k")) == Answer("key_reused")
    assert session.written == [b"x"]
    assert count(owner, "key_reused") == 1


async def test_a_refusal_is_replayed_as_such() -> None:
    session = RecordedSession()
    session.accept = False
    owner = commands(session)
    first = await owner.apply(send(b"x", "k"))
    session.accept = True
    again = await owner.apply(send(b"x", "k"))
    assert (first.status, again.status, again.replayed) == ("error", "error", True)
    assert again.body == first.body
    assert session.written == []


async def test_without_a_key_every_command_acts() -> None:
    session = RecordedSession()
    owner = commands(session)
    for _ in range(2):
        assert (await owner.apply(send(b"x"))).status == "ok"
    assert session.written == [b"x", b"x"]
    assert len(owner.keys) == 0


async def test_a_key_is_forgotten_after_its_window() -> None:
    session = RecordedSession()
    clock = Clock()
    owner = commands(session, clock)
    await owner.apply(send(b"x", "k"))
    clock.now = owner.keys.window + 1
    assert (await owner.apply(send(b"x", "k"))).replayed is False
    assert session.written == [b"x", b"x"]


async def test_a_pause_with_a_key_is_written_once() -> None:
    session = RecordedSession()
    owner = commands(session)
    pause = bus_pb2.Command(
        action="pause",
        client_uuid=UUID,
        idempotency_key="p",
        fingerprint=fingerprint("pause", UUID),
    )
    await owner.apply(pause)
    await owner.apply(pause)
    assert session.paused == [True]
