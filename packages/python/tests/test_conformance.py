"""The conformance suite (tests/conformance/*.json) on the Python host: the
component in wasmtime-py over the Python filesystem store, each scenario on
a fresh directory; then the wrapper cases (tests/conformance/wrapper-cases/),
which the Node host runs too; then the delivery scenarios
(tests/conformance/delivery/), whose ``delivery`` calls go to the instance
of the scenario's sessions."""

from pathlib import Path

import pytest

from agent_session import open_sessions
from conformance_runner import (
    delivery_scenario_files,
    run_scenario,
    scenario_files,
    wrapper_case_files,
)

FILES = scenario_files()
WRAPPER_FILES = wrapper_case_files()
DELIVERY_FILES = delivery_scenario_files()


def test_there_are_scenarios() -> None:
    assert FILES, "no scenarios in tests/conformance"


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_scenario(path: Path, tmp_path: Path) -> None:
    run_scenario(open_sessions(tmp_path), path)


def test_there_are_wrapper_cases() -> None:
    assert WRAPPER_FILES, "no wrapper cases in tests/conformance/wrapper-cases"


@pytest.mark.parametrize("path", WRAPPER_FILES, ids=[p.name for p in WRAPPER_FILES])
def test_wrapper_case(path: Path, tmp_path: Path) -> None:
    run_scenario(open_sessions(tmp_path), path, wrapper=True)


def test_there_are_delivery_scenarios() -> None:
    assert DELIVERY_FILES, "no delivery scenarios in tests/conformance/delivery"


@pytest.mark.parametrize("path", DELIVERY_FILES, ids=[p.name for p in DELIVERY_FILES])
def test_delivery_conformance(path: Path, tmp_path: Path) -> None:
    sessions = open_sessions(tmp_path)
    try:
        run_scenario(sessions, path, delivery=True)
    finally:
        # Lets go of the sender lock and the intake segment, if a step
        # failed before the scenario's own stop-sending.
        sessions.close()
