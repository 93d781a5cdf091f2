"""The wheel: what it holds, and a full lifecycle from it installed in a
fresh virtual environment outside the repository (wasmtime from PyPI).
A build without the component stops, naming the command that builds it."""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Dict, List

import pytest

PACKAGE = Path(__file__).resolve().parents[1]
REPO = PACKAGE.parents[1]
COMPONENT = "agent_session/component/agent_session_on_root.wasm"
# The session component run on PostgreSQL (imports store and notify).
GUEST = "agent_session/component/agent_session_guest.wasm"


def clean_env(**extra: str) -> Dict[str, str]:
    """This environment without what would lead to the repository's copy."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "AGENT_SESSION_COMPONENT")}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", **extra)
    return env


def pip_wheel(source: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", str(source), "-w", str(out)],
        env=clean_env(), capture_output=True, text=True, timeout=180,
    )  # fmt: skip


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    built = pip_wheel(PACKAGE, out)
    assert built.returncode == 0, built.stdout + built.stderr
    (whl,) = out.glob("agent_session-0.4.0-*.whl")
    return whl


def test_the_wheel_holds_the_package_and_its_component(wheel: Path) -> None:
    assert wheel.name == "agent_session-0.4.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        assert COMPONENT in names
        assert "agent_session/py.typed" in names
        assert z.read(COMPONENT) == (PACKAGE / COMPONENT).read_bytes()
        assert GUEST in names and z.read(GUEST) == (PACKAGE / GUEST).read_bytes()
        assert "agent_session/_postgres.py" in names
        assert not [n for n in names if "test" in n.split("/")[0] or "conftest" in n]
        assert {n.split("/")[0] for n in names} == {"agent_session", "agent_session-0.4.0.dist-info"}
        for name in names:
            assert str(REPO).encode() not in z.read(name), f"{name} names the repository"
        metadata = z.read("agent_session-0.4.0.dist-info/METADATA").decode()
    assert "Requires-Dist: wasmtime==50.0.1" in metadata
    # The frameworks are extras: the adapters are in the wheel, the
    # frameworks only when asked for.
    assert "agent_session/langgraph.py" in names and "agent_session/openai_agents.py" in names
    assert 'Requires-Dist: langgraph-checkpoint<5,>=4.3.2; extra == "langgraph"' in metadata
    assert 'Requires-Dist: openai-agents<0.25,>=0.24.0; extra == "openai-agents"' in metadata
    assert 'Requires-Dist: psycopg[binary]<4,>=3.3.9; extra == "postgres"' in metadata
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    assert [r for r in requires if "extra ==" not in r] == ["Requires-Dist: wasmtime==50.0.1"]
    assert "Requires-Python: >=3.11" in metadata
    assert "License-Expression: Apache-2.0" in metadata


# Run in the fresh environment, each in a new process.
FIRST = """
import json, agent_session
from agent_session import component_path, open_sessions
sessions = open_sessions("store")
s = sessions.start("packaged", user_id="u1", channel_id="c1", max_iterations=10)
sessions.iterate(s.id, {"step": 1})
sessions.iterate(s.id, {"step": 2})
p = sessions.pause(s.id, "later")
print(json.dumps({"id": s.id, "status": p.status, "iteration": p.iteration,
                  "package": agent_session.__file__, "component": str(component_path()),
                  "origin": agent_session.component_origin()}))
"""

SECOND = """
import json, sys, agent_session
from agent_session import open_sessions
sessions = open_sessions("store")
id = sys.argv[1]
r = sessions.resume(id)
ctx = sessions.resumption_context(id)
done = sessions.complete(id, {"ok": True})
stats = sessions.stats()
print(json.dumps({"resumed": r.status, "resumable": ctx.resumable,
                  "recent": [e.kind for e in ctx.recent_events],
                  "user": ctx.session.user_id, "channel": ctx.session.channel_id,
                  "max": ctx.session.max_iterations, "status": done.status,
                  "result": done.result, "total": stats.total,
                  "completed": stats.by_status["completed"],
                  "origin": agent_session.component_origin()}))
"""


def run_in(venv_python: Path, cwd: Path, code: str, *args: str) -> Dict:
    out = subprocess.run(
        [str(venv_python), "-I", "-c", code, *args],
        cwd=cwd, env=clean_env(AGENT_SESSION_CACHE_DIR=str(cwd / "cache")),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    result: Dict = json.loads(out.stdout)
    return result


def test_the_installed_wheel_runs_a_lifecycle(wheel: Path, tmp_path: Path) -> None:
    assert REPO not in tmp_path.parents
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(wheel)],
        env=clean_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert install.returncode == 0, install.stdout + install.stderr
    work = tmp_path / "work"
    work.mkdir()

    first = run_in(python, work, FIRST)
    site = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    assert Path(first["package"]) == site / "agent_session" / "__init__.py"
    assert Path(first["component"]) == site / COMPONENT
    assert (first["status"], first["iteration"], first["origin"]) == ("paused", 2, "compiled")

    second = run_in(python, work, SECOND, first["id"])
    assert second == {
        "resumed": "active",
        "resumable": True,
        "recent": ["start", "iteration", "iteration", "pause", "resume"],
        "user": "u1",
        "channel": "c1",
        "max": 10,
        "status": "completed",
        "result": {"ok": True},
        "total": 1,
        "completed": 1,
        "origin": "cache",
    }
    assert (work / "store" / "sessions" / first["id"]).is_dir()


def test_a_build_without_the_component_stops(tmp_path: Path) -> None:
    # A checkout where the component was never built: the package's files,
    # without the copy of the component, outside any repository.
    source = tmp_path / "source"
    shutil.copytree(
        PACKAGE, source,
        ignore=shutil.ignore_patterns("component", "build", "*.egg-info", "__pycache__", "tests"),
    )  # fmt: skip
    assert not (source / COMPONENT).exists()
    out = tmp_path / "out"
    built = pip_wheel(source, out)
    assert built.returncode != 0
    said = built.stdout + built.stderr
    assert "the session component agent_session_on_root.wasm is not built" in said
    assert "`cargo build --release -p agent-session-host`, then `./scripts/python-host.sh`" in said
    made: List[Path] = list(out.glob("*.whl")) if out.exists() else []
    assert made == []
