"""Puts the session component into the package before it is built (the
metadata is in pyproject.toml).

In this repository the component is cargo's output; the build copies it
into ``agent_session/component/`` as ``scripts/python-host.sh`` does. In an
sdist it is there already. Without it the build stops: a wheel without its
component would install and then fail at the first ``open_sessions``.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist
from setuptools.errors import FileError

HERE = Path(__file__).resolve().parent
# The session-on-root component (directories) and the session component
# that imports store and notify (PostgreSQL).
NAMES = ("agent_session_on_root.wasm", "agent_session_guest.wasm")
COMPONENT = HERE / "agent_session" / "component"
REPO = HERE.parents[1]
RELEASE = REPO / "target" / "wasm-guest" / "wasm32-wasip2" / "release"


def stage_component() -> None:
    # Only inside this repository: from an unpacked sdist, parents[1] is
    # some unrelated directory.
    in_repo = (REPO / "scripts" / "python-host.sh").is_file()
    for name in NAMES:
        packaged, built = COMPONENT / name, RELEASE / name
        if in_repo and built.is_file():
            if not packaged.is_file() or packaged.read_bytes() != built.read_bytes():
                packaged.parent.mkdir(exist_ok=True)
                tmp = packaged.with_suffix(".tmp")
                shutil.copyfile(built, tmp)
                tmp.replace(packaged)
        if not packaged.is_file():
            raise FileError(
                f"the session component {name} is not built: run "
                "`cargo build --release -p agent-session-host`, then `./scripts/python-host.sh`, "
                "in the agent-session repository, and build the package again"
            )


class BuildPy(build_py):
    def run(self) -> None:
        stage_component()
        super().run()


class Sdist(sdist):
    def run(self) -> None:
        stage_component()
        super().run()


setup(cmdclass={"build_py": BuildPy, "sdist": Sdist})
