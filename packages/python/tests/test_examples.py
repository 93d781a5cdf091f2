"""The README's framework snippets, examples/langgraph_saver.py and
examples/openai_agents_session.py, run as they are (twice on one
directory: the second run continues the first)."""

import os
import re
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]
EXAMPLES = PACKAGE / "examples"


def _run(example: str, *args: str) -> str:
    env = dict(os.environ, PYTHONPATH=str(PACKAGE))
    env.pop("OPENAI_API_KEY", None)
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / example), *args],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_langgraph_example(tmp_path: Path) -> None:
    first = _run("langgraph_saver.py", str(tmp_path))
    assert "count: 2\n" in first and f"checkpoints of thread 'demo' in {tmp_path}: 8\n" in first
    second = _run("langgraph_saver.py", str(tmp_path))
    assert "count: 4\n" in second and f"checkpoints of thread 'demo' in {tmp_path}: 16\n" in second
    assert "'report at 4'" in second


def test_the_openai_agents_example(tmp_path: Path) -> None:
    first = _run("openai_agents_session.py", str(tmp_path))
    assert first.startswith("answer: I have seen 1 messages\n")
    assert f"items of conversation 'demo' in {tmp_path}: 2\n" in first
    second = _run("openai_agents_session.py", str(tmp_path), "again")
    assert second.startswith("answer: I have seen 3 messages\n")
    assert f"items of conversation 'demo' in {tmp_path}: 4\n" in second


def test_the_readme_shows_the_examples_as_they_are() -> None:
    """The root README quotes the framework examples (Python and
    JavaScript) whole, each after a marker naming its file: a quote that
    drifted from the file it names would show code nobody runs."""
    root = PACKAGE.parents[1]
    readme = (root / "README.md").read_text()
    marker = re.compile(r"<!-- (\S+): kept equal to the file by [^>]*-->\n```\w+\n(.*?)\n```", re.S)
    quoted = {path: body for path, body in marker.findall(readme)}
    assert set(quoted) == {
        "packages/python/examples/langgraph_saver.py",
        "packages/python/examples/openai_agents_session.py",
        "packages/node/examples/langgraph-saver.mjs",
        "packages/node/examples/openai-agents-session.mjs",
    }
    for path, body in quoted.items():
        assert body == (root / path).read_text().rstrip("\n"), path
