"""Which Redis the tests use: the binary when there is one, so a Docker engine that cannot pull
images (no registry) does not turn 76 tests into errors."""

from __future__ import annotations

import pytest

from tests.support.redis_server import INSTALL_HINT, choose_backend


@pytest.mark.parametrize(
    ("choice", "binary", "docker", "backend"),
    [
        ("", True, True, "binary"),  # before: docker, whenever `docker info` answered
        ("", True, False, "binary"),
        ("", False, True, "docker"),
        ("binary", True, True, "binary"),
        ("docker", True, False, "docker"),
        ("docker", False, False, "docker"),
    ],
)
def test_the_binary_is_preferred_and_the_variable_decides(
    choice: str, binary: bool, docker: bool, backend: str
) -> None:
    assert choose_backend(choice, binary=binary, docker=lambda: docker) == backend


def test_docker_is_not_asked_when_the_binary_is_there() -> None:
    asked: list[bool] = []

    def docker() -> bool:
        asked.append(True)
        return True

    assert choose_backend("", binary=True, docker=docker) == "binary"
    assert asked == []


def test_neither_says_how_to_install_one() -> None:
    with pytest.raises(RuntimeError) as raised:
        choose_backend("", binary=False, docker=lambda: False)
    assert str(raised.value) == INSTALL_HINT


def test_a_bad_choice_is_named() -> None:
    with pytest.raises(RuntimeError, match="PARADOXPLEX_TEST_REDIS='podman'"):
        choose_backend("podman", binary=True, docker=lambda: True)
