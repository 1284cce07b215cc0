"""A node under a low open-file limit, as a process: it raises its soft limit to the hard one,
says once that ``--max-connections`` does not fit, refuses (and counts) the sockets past what
the limit leaves room for, and goes on serving; ``node --check`` says the same."""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Iterator

import pytest

from paradoxplex.shared.admission import socket_room
from tests.support.client import Client, close_all
from tests.support.eventually import eventually
from tests.support.processes import (
    ECHO_LINE,
    NODE_LINE,
    open_files_limited,
    run,
    start,
)

pytestmark = pytest.mark.e2e

SOFT, HARD = 64, 256
ROOM = socket_room(HARD)  # 126
CLIENTS = HARD + 44  # more sockets than the hard limit itself


@pytest.fixture
def echo() -> Iterator[str]:
    running, ready = start("upstream-echo", "--listen", "127.0.0.1:0", ready=ECHO_LINE)
    with running:
        yield f"127.0.0.1:{ready['port']}"


def metric(url: str, name: str) -> float:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert found is not None, f"{name} not in /metrics"
    return float(found[1])


async def test_sockets_past_the_open_file_limit_are_refused_and_counted(echo: str) -> None:
    running, ready = start(
        "node", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--upstream", echo,
        ready=NODE_LINE, wrap=open_files_limited(SOFT, HARD),
    )  # fmt: skip
    clients: list[Client] = []
    with running:
        url, listen = ready["admin"], f"127.0.0.1:{ready['port']}"
        assert metric(url, "process_max_fds") == HARD  # the soft limit was raised to the hard
        warnings = [line for line in running.log().splitlines() if "open-file limit" in line]
        assert len(warnings) == 1, running.log()
        assert (
            f"the open-file limit ({HARD}) is below --max-connections (10000) plus "
            f"{HARD - ROOM} for the node itself: sockets past {ROOM} will be refused"
        ) in warnings[0]

        clients = [await Client.connect(listen, collect=True) for _ in range(CLIENTS)]
        refused = 'paradoxplex_sockets_refused_total{reason="fd_limit"}'
        await eventually(
            lambda: metric(url, refused) == CLIENTS - ROOM,
            timeout=15,
            message=f"{CLIENTS - ROOM} sockets refused for the open-file limit",
        )
        assert metric(url, "paradoxplex_sockets") == ROOM
        assert metric(url, "process_open_fds") < HARD
        await eventually(lambda: sum(c.eof for c in clients) == CLIENTS - ROOM, timeout=10)

        served = [client for client in clients if not client.eof]
        assert len(served) == ROOM
        await served[0].round_trip(b"still serving\n")
        await close_all(served[:10])
        await eventually(lambda: metric(url, "paradoxplex_sockets") == ROOM - 10, timeout=10)
        late = await Client.connect(listen, collect=True)
        clients.append(late)
        await late.round_trip(b"room again\n")
        assert metric(url, refused) == CLIENTS - ROOM

        await close_all(clients)
        assert running.terminate() == 0
        log = running.log()
        for sign in ("Traceback", "Too many open files", "accept"):
            assert sign not in log, log
        assert "sockets held, all that the open-file limit leaves room for (fd_limit)" in log


def test_node_check_warns_of_an_open_file_limit_too_low_and_passes(echo: str) -> None:
    args = ("node", "--check", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0")
    low = run(*args, "--upstream", echo, wrap=open_files_limited(SOFT, HARD))
    assert low.returncode == 0, low.stderr
    [line] = [line for line in low.stdout.splitlines() if "open-file limit" in line]
    assert line.startswith(f"warning: the open-file limit ({HARD}) is below --max-connections")
    fits = run(
        *args,
        "--upstream",
        echo,
        "--max-connections",
        str(ROOM),
        wrap=open_files_limited(SOFT, HARD),
    )
    assert fits.returncode == 0, fits.stderr
    assert f"ok: open-file limit {HARD}: room for {ROOM} sockets" in fits.stdout.splitlines()
