"""Session ids, labels, and which sessions a broadcast reaches."""

from __future__ import annotations

import itertools
import uuid

import pytest

from paradoxplex.shared.errors import InvalidRequest
from paradoxplex.shared.sessions import (
    MAX_LABEL_LENGTH,
    MAX_LABELS,
    BroadcastTarget,
    ClientUuids,
    SessionInfo,
    SessionState,
    canonical_uuid,
    check_label,
    check_labels,
    matches,
    new_client_uuid,
    parse_label,
)

ID = "0f8fad5b-d9cb-469f-a165-70867728950e"


# --- ids ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (ID, ID),
        ("00000000-0000-0000-0000-000000000000", "00000000-0000-0000-0000-000000000000"),
        # RFC 4122 text is case-insensitive: upper case is read, and answered in lower case.
        (ID.upper(), ID),
        ("0F8FAD5B-d9cb-469f-A165-70867728950e", ID),
        # every other spelling uuid.UUID would accept is refused
        ("{" + ID + "}", None),
        ("urn:uuid:" + ID, None),
        (ID.replace("-", ""), None),
        (" " + ID, None),
        (ID + " ", None),
        (ID + "\n", None),
        ("0f8fad5bd9cb-469f-a165-70867728950e-", None),
        (ID[:-1], None),
        (ID + "0", None),
        (ID.replace("f", "g", 1), None),
        ("", None),
        ("not-a-uuid", None),
    ],
)
def test_canonical_uuid(text: str, expected: str | None) -> None:
    assert canonical_uuid(text) == expected


@pytest.mark.parametrize("value", [None, 123, b"0f8fad5b-d9cb-469f-a165-70867728950e"])
def test_canonical_uuid_of_a_non_string(value: object) -> None:
    assert canonical_uuid(value) is None  # type: ignore[arg-type]


def test_new_client_uuids_are_canonical_and_distinct() -> None:
    ids = {new_client_uuid() for _ in range(100)}
    assert len(ids) == 100
    assert all(canonical_uuid(i) == i for i in ids)


# --- labels ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("k=v", ("k", "v")),
        ("team=blue", ("team", "blue")),
        ("a.b_c-d/e=x", ("a.b_c-d/e", "x")),
        ("k=", ("k", "")),
        ("k=a=b", ("k", "a=b")),
        ("k=with space", ("k", "with space")),
        ("K9=" + "v" * MAX_LABEL_LENGTH, ("K9", "v" * MAX_LABEL_LENGTH)),
        ("k" * MAX_LABEL_LENGTH + "=v", ("k" * MAX_LABEL_LENGTH, "v")),
    ],
)
def test_parse_label(text: str, expected: tuple[str, str]) -> None:
    assert parse_label(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "k",
        "=v",
        "k k=v",
        "k:x=v",
        "ké=v",
        "k\n=v",
        "k\t=v",
        "k" * (MAX_LABEL_LENGTH + 1) + "=v",
        "k=" + "v" * (MAX_LABEL_LENGTH + 1),
    ],
)
def test_bad_label(text: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_label(text)
    assert caught.value.field == "label"
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("key", "value"),
    [("", "v"), ("a\n", "v"), ("\na", "v"), ("a b", "v"), ("k", "v" * (MAX_LABEL_LENGTH + 1))],
)
def test_check_label_refuses(key: str, value: str) -> None:
    with pytest.raises(InvalidRequest):
        check_label(key, value)


def test_error_shows_at_most_64_chars_of_a_bad_key() -> None:
    with pytest.raises(InvalidRequest) as caught:
        check_label("!" * 1000, "v")
    assert "!" * 65 not in str(caught.value)


@pytest.mark.parametrize(
    "labels",
    [{}, {"a": "b"}, {f"k{i}": "v" for i in range(MAX_LABELS)}, {"k": ""}],
)
def test_check_labels_accepts(labels: dict[str, str]) -> None:
    checked = check_labels(labels)
    assert checked == labels
    assert checked is not labels


@pytest.mark.parametrize(
    "labels",
    [
        None,
        [],
        "k=v",
        [("k", "v")],
        {f"k{i}": "v" for i in range(MAX_LABELS + 1)},
        {1: "v"},
        {"k": 1},
        {"k": None},
        {"k k": "v"},
        {"k": "v" * (MAX_LABEL_LENGTH + 1)},
    ],
)
def test_check_labels_refuses(labels: object) -> None:
    with pytest.raises(InvalidRequest) as caught:
        check_labels(labels)
    assert caught.value.field in ("labels", "label")


# --- broadcast filters ----------------------------------------------------------------------

LABELS = {"team": "blue"}
LABEL_FILTERS: list[tuple[str, tuple[str, str] | None, bool]] = [
    ("no-label", None, True),
    ("same-label", ("team", "blue"), True),
    ("other-value", ("team", "red"), False),
    ("missing-key", ("zone", "blue"), False),
    ("empty-value", ("team", ""), False),
]
REACHES = {
    (BroadcastTarget.ALL, SessionState.ACTIVE): True,
    (BroadcastTarget.ALL, SessionState.PAUSED): True,
    (BroadcastTarget.ACTIVE, SessionState.ACTIVE): True,
    (BroadcastTarget.ACTIVE, SessionState.PAUSED): False,
    (BroadcastTarget.PAUSED, SessionState.ACTIVE): False,
    (BroadcastTarget.PAUSED, SessionState.PAUSED): True,
}
CASES = [
    pytest.param(
        target,
        state,
        label,
        REACHES[target, state] and label_ok,
        id=f"{target.value}-{state.value}-{name}",
    )
    for target, state, (name, label, label_ok) in itertools.product(
        BroadcastTarget, SessionState, LABEL_FILTERS
    )
]


def session(state: SessionState = SessionState.ACTIVE, **labels: str) -> SessionInfo:
    return SessionInfo(ID, "node-a", "10.0.0.1:5000", 0.0, state=state, labels=dict(labels))


@pytest.mark.parametrize(("target", "state", "label", "expected"), CASES)
def test_matches(
    target: BroadcastTarget,
    state: SessionState,
    label: tuple[str, str] | None,
    expected: bool,
) -> None:
    assert matches(session(state, **LABELS), target, label) is expected


def test_every_target_and_state_is_in_the_table() -> None:
    assert set(REACHES) == set(itertools.product(BroadcastTarget, SessionState))


@pytest.mark.parametrize("target", list(BroadcastTarget))
def test_label_filter_on_a_session_without_labels(target: BroadcastTarget) -> None:
    info = session(
        SessionState.ACTIVE if target is not BroadcastTarget.PAUSED else SessionState.PAUSED
    )
    assert matches(info, target) is True
    assert matches(info, target, ("team", "blue")) is False


# --- the record -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "active"), [(SessionState.ACTIVE, True), (SessionState.PAUSED, False)]
)
def test_active(state: SessionState, active: bool) -> None:
    assert session(state).active is active


def test_defaults() -> None:
    info = SessionInfo(ID, "n", "r", 1.5)
    assert info.state is SessionState.ACTIVE
    assert (info.labels, info.bytes_in, info.bytes_out) == ({}, 0, 0)
    assert (info.messages_in, info.messages_out) == (0, 0)


def test_round_trip() -> None:
    info = SessionInfo(
        ID,
        "node-a",
        "[::1]:4000",
        12.25,
        SessionState.PAUSED,
        {"team": "blue"},
        bytes_in=1,
        bytes_out=2,
        messages_in=3,
        messages_out=4,
        incarnation="0123456789ab",
    )
    data = info.to_dict()
    assert data == {
        "uuid": ID,
        "node": "node-a",
        "incarnation": "0123456789ab",
        "remote": "[::1]:4000",
        "connected_at": 12.25,
        "state": "paused",
        "labels": {"team": "blue"},
        "bytes_in": 1,
        "bytes_out": 2,
        "messages_in": 3,
        "messages_out": 4,
    }
    assert SessionInfo.from_dict(data) == info
    data["labels"]["team"] = "red"
    assert info.labels == {"team": "blue"}


@pytest.mark.parametrize("labels", [None, {}])
def test_from_dict_fills_defaults(labels: dict[str, str] | None) -> None:
    info = SessionInfo.from_dict(
        {"uuid": ID, "node": "n", "remote": "r", "connected_at": "3", "labels": labels}
    )
    assert info == SessionInfo(ID, "n", "r", 3.0)


def test_from_dict_coerces_strings() -> None:
    info = SessionInfo.from_dict(
        {
            "uuid": ID,
            "node": "n",
            "remote": "r",
            "connected_at": 1,
            "bytes_in": "7",
            "labels": {"k": 5},
        }
    )
    assert (info.bytes_in, info.labels) == (7, {"k": "5"})


def test_session_ids_are_version_4_with_every_other_bit_random() -> None:
    ids = ClientUuids(block=8)
    values = [uuid.UUID(ids.new()) for _ in range(200)]  # 25 blocks
    assert len(set(values)) == 200
    assert all(value.version == 4 and value.variant == uuid.RFC_4122 for value in values)
    assert all(canonical_uuid(str(value)) == str(value) for value in values)
    ored = 0
    anded = (1 << 128) - 1
    for value in values:
        ored |= value.int
        anded &= value.int
    fixed = (0xF000 << 64) | (0xC000 << 48)  # the version and variant bits
    assert ored | fixed == (1 << 128) - 1  # every random bit was seen set...
    assert anded & ~fixed == 0  # ...and clear


def test_forgetting_the_drawn_bytes_draws_new_ones() -> None:
    ids = ClientUuids(block=4)
    first = ids.new()
    ids.forget()
    assert ids.new() != first
