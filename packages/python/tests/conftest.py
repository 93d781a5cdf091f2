"""Test setup: the package from this checkout (no install needed), a
compiled-component cache of the run's own, the conformance count and
transcript at the end of the run."""

import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# Not the user's cache; set before anything loads the component, and
# inherited by every process the tests start.
_CACHE = tempfile.mkdtemp(prefix="agent-session-test-cache-")
os.environ["AGENT_SESSION_CACHE_DIR"] = _CACHE

import conformance_runner  # noqa: E402  (needs the path above)

_SCENARIO_TEST = "test_conformance.py::test_scenario["
_DELIVERY_TEST = "test_conformance.py::test_delivery_conformance["


def pytest_sessionfinish(session, exitstatus) -> None:  # type: ignore[no-untyped-def]
    """Write the transcript (README "Transcripts") of the scenarios that
    ran; remove the run's cache."""
    shutil.rmtree(_CACHE, ignore_errors=True)
    out = os.environ.get("AGENT_SESSION_CONFORMANCE_OUT")
    out_dir = Path(out) if out else conformance_runner.REPO / "target" / "conformance"
    if conformance_runner.TRANSCRIPTS:
        conformance_runner.write_transcript(out_dir)
    if conformance_runner.DELIVERY_TRANSCRIPTS:
        conformance_runner.write_transcript(out_dir, delivery=True)


def _outcomes(terminalreporter, test: str) -> dict:  # type: ignore[no-untyped-def]
    outcomes = {}
    for status in ("passed", "failed", "error"):
        for report in terminalreporter.stats.get(status, []):
            if test in report.nodeid:
                # A failure in any phase (setup, call, teardown) fails it.
                if outcomes.get(report.nodeid) != "failed":
                    outcomes[report.nodeid] = "passed" if status == "passed" else "failed"
    return outcomes


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    """Print how many scenarios passed, as every conformance runner does."""
    for test, label in (
        (_SCENARIO_TEST, "python/wasmtime-py"),
        (_DELIVERY_TEST, "python, delivery"),
    ):
        outcomes = _outcomes(terminalreporter, test)
        if outcomes:
            passed = sum(1 for o in outcomes.values() if o == "passed")
            terminalreporter.write_line(
                f"conformance ({label}): {passed} of {len(outcomes)} scenarios passed"
            )
