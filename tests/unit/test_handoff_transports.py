"""The handoff's stand-in transports, without a loop: what a frozen socket's session writes is
kept in order; a kept socket's stand-in says everything to the old process; an adopted
socket's first events are kept in order."""

from __future__ import annotations

import asyncio
from typing import Any

from paradoxplex.node.handoff.transports import Arrival, CaptureTransport, RelayTransport
from paradoxplex.wire import handoff_pb2 as pb


class Real(asyncio.Transport):
    """A recording transport with ``buffered`` bytes not yet taken by the kernel."""

    def __init__(self, buffered: int = 0) -> None:
        super().__init__()
        self.buffered = buffered
        self.calls: list[str] = []

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("10.0.0.1", 9)}.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.calls.append("write")

    def pause_reading(self) -> None:
        self.calls.append("pause")

    def resume_reading(self) -> None:
        self.calls.append("resume")

    def close(self) -> None:
        self.calls.append("close")


def test_a_capture_keeps_writes_in_order_and_touches_nothing() -> None:
    real = Real(buffered=10)
    capture = CaptureTransport(real)
    capture.write(b"one")
    capture.write(memoryview(b"two"))
    capture.pause_reading()
    capture.resume_reading()
    assert capture.get_write_buffer_size() == 16  # both: the budget applies as before
    assert capture.get_extra_info("peername") == ("10.0.0.1", 9)
    assert capture.take() == [b"one", b"two"]
    assert capture.take() == []
    assert real.calls == []


def test_a_capture_keeps_a_close_and_an_abort_wins() -> None:
    capture = CaptureTransport(Real())
    assert not capture.is_closing()
    capture.close()
    assert capture.ending == "close"
    capture.abort()
    capture.close()
    assert capture.ending == "abort"
    assert capture.is_closing()


def test_a_relay_transport_says_everything_to_the_old_process() -> None:
    said: list[pb.Relay] = []
    relay = RelayTransport("u1", said.append)
    relay.write(b"hi")
    relay.pause_reading()
    relay.resume_reading()
    relay.close()
    relay.write(b"late")  # after the close: nothing
    relay.abort()  # a second close: nothing
    assert [m.WhichOneof("op") for m in said] == ["write", "pause", "resume", "close"]
    assert said[0].write == pb.Write(client_uuid="u1", payload=b"hi")
    assert said[3].close == "u1"
    assert relay.is_closing()


def test_an_arrival_keeps_what_came_before_the_session_in_order() -> None:
    arrival = Arrival()
    assert arrival.itself() is arrival
    arrival.data_received(b"a")
    assert arrival.eof_received() is True  # half-closed: the session decides
    error = ConnectionResetError()
    arrival.connection_lost(error)
    assert arrival.events == [("data", b"a"), ("eof", None), ("lost", error)]
