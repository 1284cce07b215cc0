"""gRPC's process-wide defaults: set where missing, never over the operator's choice."""

from __future__ import annotations

import os

from paradoxplex.node.grpc_env import DEFAULTS, apply_grpc_defaults


def test_defaults_fill_an_empty_environment() -> None:
    env: dict[str, str] = {}
    apply_grpc_defaults(env)
    assert env == {
        "GRPC_VERBOSITY": "NONE",
        "GRPC_EXPERIMENTS": "-event_engine_client,-event_engine_listener",
    }
    assert env == DEFAULTS


def test_an_operator_setting_wins_even_when_empty() -> None:
    env = {"GRPC_EXPERIMENTS": "", "GRPC_VERBOSITY": "DEBUG"}
    apply_grpc_defaults(env)
    assert env == {"GRPC_EXPERIMENTS": "", "GRPC_VERBOSITY": "DEBUG"}


def test_a_running_test_process_uses_the_shipped_polling() -> None:
    assert os.environ["GRPC_EXPERIMENTS"] in {DEFAULTS["GRPC_EXPERIMENTS"], ""}
