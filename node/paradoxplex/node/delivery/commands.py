"""Admin commands on the sockets this node holds: the owner's side of the admin API.

Rules:
- A command names a socket by ``client_uuid`` and an action (``get``, ``send``, ``pause``,
  ``resume``, ``labels``, ``close``); the answer is an ``Answer``: ``ok`` with the socket's
  record as orjson, ``not_found`` when this node does not hold it, ``error`` with a reason
  otherwise.
- A command with an idempotency key acts once per key on this node, the owner, whatever
  node asked and however often: the key is decided here, where the action happens, in one
  step with the action (no await between), so two commands with one key never both act.
  Every later command with the key gets the first one's answer, ``replayed`` (for ``ok`` without
  the record: the asker does not read it); with another fingerprint, ``key_reused``. The keys
  are ``ActionRecords`` (10 minutes, at most ``MAX_KEYS``; a record evicted early is counted
  in ``paradoxplex_idempotency_total{event="evicted"}``). They die with the process, and so
  do its sockets: no key can act twice on a socket that lives on; a hot handoff carries them
  to the process the sockets move to (``ActionRecords.done`` / ``restore``).
- A change (pause, resume, labels) is written to the fleet state before ``apply`` returns
  (that one socket's record, one round trip): an admin action is visible fleet-wide once it
  is answered. Nothing else is waited for: the owner answers while its asker still waits.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import orjson

from paradoxplex.node.metrics import Metrics
from paradoxplex.node.sockets.session import Session
from paradoxplex.shared.idempotency import COUNTED, ActionRecords, IdempotencyEvent, Verdict
from paradoxplex.shared.sessions import SessionInfo
from paradoxplex.wire import bus_pb2

#: Actions that change a socket's record in the fleet state.
CHANGES = frozenset({"pause", "resume", "labels"})


@dataclass(frozen=True, slots=True)
class Answer:
    """The owner's answer to one command (see the rules)."""

    status: str
    body: bytes = b""
    replayed: bool = False


#: What a key's record keeps of an ``ok`` (one object for all: the asker reads no record).
KEPT_OK = Answer("ok")


class SocketCommands:
    def __init__(
        self,
        sessions: Mapping[str, Session],
        *,
        write: Callable[[SessionInfo], Awaitable[None]],
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sessions = sessions
        self.write = write
        self.metrics = metrics
        self.clock = clock
        self.keys: ActionRecords[Answer] = ActionRecords()

    async def apply(self, command: bus_pb2.Command) -> Answer:
        """Execute (once per idempotency key), then write the change it made to the socket's
        record, if any."""
        key = command.idempotency_key
        if not key:
            answer = self.execute(command)
        else:
            answer = self._once(command)
            if answer.replayed or answer.status in ("key_reused", "in_progress"):
                return answer
        if answer.status == "ok" and command.action in CHANGES:
            session = self.sessions.get(command.client_uuid)
            if session is not None and session.info is not None:
                await self.write(session.info)
        return answer

    def _once(self, command: bus_pb2.Command) -> Answer:
        """Decide the key and act in one step (see the rules)."""
        key, asked, now = command.idempotency_key, command.fingerprint, self.clock()
        claim = self.keys.begin(key, asked, now)
        count = self.metrics.idempotency.labels
        if claim.evicted:
            count(IdempotencyEvent.EVICTED).inc(claim.evicted)
        if claim.verdict in COUNTED:
            count(COUNTED[claim.verdict]).inc()
        if claim.verdict is Verdict.MISMATCH:
            return Answer("key_reused")
        if claim.verdict is Verdict.IN_PROGRESS:  # only if an action ever awaits in between
            return Answer("in_progress")
        if claim.verdict is Verdict.REPLAY and claim.answer is not None:
            return Answer(claim.answer.status, claim.answer.body, replayed=True)
        answer = self.execute(command)
        kept = KEPT_OK if answer.status == "ok" else Answer(answer.status, answer.body)
        self.keys.finish(key, asked, kept, now)
        return answer

    def execute(self, command: bus_pb2.Command) -> Answer:
        session = self.sessions.get(command.client_uuid)
        if session is None or session.info is None:
            return Answer("not_found")
        info = session.info
        action = command.action
        if action == "send":
            if not session.write(command.payload):
                return Answer("error", b"socket is closing or its write buffer is full")
        elif action in ("pause", "resume"):
            session.set_paused(action == "pause")
        elif action == "labels":
            info.labels = dict(command.labels)
        elif action == "close":
            session.close("closed by admin")
        elif action != "get":
            return Answer("error", b"unknown action")
        return Answer("ok", orjson.dumps(info.to_dict()))

    def __repr__(self) -> str:
        return f"<SocketCommands sockets={len(self.sessions)} {self.keys!r}>"
