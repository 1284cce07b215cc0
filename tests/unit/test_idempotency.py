"""Idempotency keys, the pure part: which keys are accepted, what a fingerprint tells apart,
and the bounded records that decide whether a call acts, replays, waits or is refused."""

from __future__ import annotations

import re

import pytest

from paradoxplex.admin import schemas
from paradoxplex.shared.errors import InvalidRequest
from paradoxplex.shared.idempotency import (
    KEY_PATTERN,
    MAX_KEY_LENGTH,
    WINDOW,
    ActionRecords,
    Claim,
    Verdict,
    fingerprint,
    parse_key,
)

ASKED = fingerprint("send", "u-1", b"hi")


@pytest.mark.parametrize(
    "key",
    ["a", "0", "8e03978e-40d5-43e8-bc93-6894a57f9324", '"sf-string"', "a b", "~" * MAX_KEY_LENGTH],
)
def test_a_key_is_taken_as_it_is(key: str) -> None:
    assert parse_key(key) == key


@pytest.mark.parametrize(
    "key", ["", " a", "a ", "x" * (MAX_KEY_LENGTH + 1), "caf\u00e9", "tab\there", "nl\n"]
)
def test_a_malformed_key_names_the_header(key: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        parse_key(key)
    assert raised.value.field == "Idempotency-Key"


def test_no_header_is_no_key() -> None:
    assert parse_key(None) is None


def test_the_document_states_the_pattern_the_code_enforces() -> None:
    stated = schemas.IDEMPOTENCY_KEY["schema"]
    assert stated["pattern"] == f"^{KEY_PATTERN}$"
    assert stated["maxLength"] == MAX_KEY_LENGTH
    for key in ("a", "a b", "x" * MAX_KEY_LENGTH, " a", "x" * (MAX_KEY_LENGTH + 1)):
        accepted = re.fullmatch(KEY_PATTERN, key) is not None
        assert accepted == (len(key) <= MAX_KEY_LENGTH and key == key.strip())


@pytest.mark.parametrize(
    ("one", "other"),
    [
        (("send", "u", b"ab"), ("send", "u", b"a", b"b")),
        (("send", "ab", b""), ("send", "a", b"b")),
        (("send", "u", b"x"), ("pause", "u", b"x")),
        (("send", "u", b"x"), ("send", "v", b"x")),
        (("labels", "u", {"a": "1"}), ("labels", "u", {"a": "2"})),
        (("labels", "u", {"a": "1"}), ("labels", "u", {"a": "1", "b": ""})),
        (("broadcast", "all", None, b"x"), ("broadcast", "all", "", b"x")),
        (("add", 1), ("add", "1")),
    ],
)
def test_a_fingerprint_tells_requests_apart(
    one: tuple[object, ...], other: tuple[object, ...]
) -> None:
    assert fingerprint(*one) != fingerprint(*other)  # type: ignore[arg-type]


def test_a_fingerprint_takes_a_mapping_in_key_order() -> None:
    assert fingerprint("labels", {"a": "1", "b": "2"}) == fingerprint(
        "labels", {"b": "2", "a": "1"}
    )
    assert len(ASKED) == 16


def test_a_key_acts_once_then_replays_its_answer() -> None:
    records: ActionRecords[str] = ActionRecords()
    assert records.begin("k", ASKED, 0.0).verdict is Verdict.FRESH
    assert records.begin("k", ASKED, 0.1).verdict is Verdict.IN_PROGRESS
    records.finish("k", ASKED, "ok", 0.2)
    replay = records.begin("k", ASKED, 100.0)
    assert (replay.verdict, replay.answer) == (Verdict.REPLAY, "ok")
    assert records.begin("k", fingerprint("send", "u-1", b"ho"), 100.0).verdict is Verdict.MISMATCH


def test_a_record_lives_its_window_after_the_answer() -> None:
    records: ActionRecords[str] = ActionRecords()
    records.begin("k", ASKED, 0.0)
    records.finish("k", ASKED, "ok", 5.0)
    assert records.begin("k", ASKED, 5.0 + WINDOW - 0.001).verdict is Verdict.REPLAY
    assert records.begin("k", ASKED, 5.0 + WINDOW).verdict is Verdict.FRESH
    assert WINDOW >= 600, "the contract: at least 10 minutes"


def test_a_pending_record_is_given_up_after_pending_seconds() -> None:
    records: ActionRecords[str] = ActionRecords(pending=60.0)
    records.begin("k", ASKED, 0.0)
    assert records.begin("k", ASKED, 59.0).verdict is Verdict.IN_PROGRESS
    assert records.begin("k", ASKED, 60.0).verdict is Verdict.FRESH


def test_a_released_key_may_act_again_but_not_someone_elses() -> None:
    records: ActionRecords[str] = ActionRecords()
    records.begin("k", ASKED, 0.0)
    records.release("k", fingerprint("other"))
    assert records.begin("k", ASKED, 0.0).verdict is Verdict.IN_PROGRESS
    records.release("k", ASKED)
    assert records.begin("k", ASKED, 0.0).verdict is Verdict.FRESH
    records.finish("k", ASKED, "ok", 0.0)
    records.release("k", ASKED)  # answered: kept
    assert records.begin("k", ASKED, 0.0).verdict is Verdict.REPLAY


def test_past_max_keys_the_oldest_goes_and_is_counted() -> None:
    records: ActionRecords[str] = ActionRecords(max_keys=3)
    evicted = []
    for number in range(5):
        claim = records.begin(f"k{number}", ASKED, float(number))
        records.finish(f"k{number}", ASKED, "ok", float(number))
        evicted.append(claim.evicted)
    assert evicted == [0, 0, 0, 1, 1]
    assert (len(records), records.evicted) == (3, 2)
    assert records.begin("k0", ASKED, 5.0).verdict is Verdict.FRESH, "evicted: it may act again"
    assert records.begin("k4", ASKED, 5.0).verdict is Verdict.REPLAY
    assert repr(records) == "<ActionRecords keys=3 evicted=3>"


def test_expired_records_go_first_without_counting() -> None:
    records: ActionRecords[str] = ActionRecords(max_keys=2, window=10.0)
    for number in range(2):
        records.begin(f"k{number}", ASKED, 0.0)
        records.finish(f"k{number}", ASKED, "ok", 0.0)
    claim = records.begin("k2", ASKED, 11.0)
    assert (claim.verdict, claim.evicted, len(records)) == (Verdict.FRESH, 0, 1)


def test_a_store_carried_to_another_process_replays_with_the_time_it_had_left() -> None:
    """A hot handoff: the answered records move with the time their window has left; a
    pending one does not (what is under way answers before the handoff)."""
    old: ActionRecords[str] = ActionRecords(window=600.0, max_keys=10)
    old.begin("done", b"f1", 100.0)
    old.finish("done", b"f1", "answer", 100.0)
    old.begin("pending", b"f2", 150.0)
    carried = old.done(400.0)
    assert carried == [("done", b"f1", 300.0, "answer")]
    new: ActionRecords[str] = ActionRecords(window=600.0, max_keys=10)
    new.restore(carried, 5000.0)
    assert new.begin("done", b"f1", 5299.0) == Claim(Verdict.REPLAY, "answer")
    assert new.begin("done", b"other", 5299.0).verdict is Verdict.MISMATCH
    assert new.begin("pending", b"f2", 5299.0).verdict is Verdict.FRESH
    assert new.begin("done", b"f1", 5300.5).verdict is Verdict.FRESH  # its window ended


def test_a_restored_store_stays_in_bounds() -> None:
    new: ActionRecords[str] = ActionRecords(max_keys=2)
    new.restore([(f"k{n}", b"f", 10.0, "a") for n in range(5)], 0.0)
    assert len(new) == 2
    assert new.evicted == 3
    assert new.begin("k4", b"f", 1.0).verdict is Verdict.REPLAY
