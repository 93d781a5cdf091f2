#!/usr/bin/env python3
"""How long a new process takes to get its first answer: import the
package, open a directory, make one call, with the compiled-component cache
warm (an entry for this component is there) and cold (an empty cache)::

    target/py-host-venv/bin/python packages/python/bench/open.py [runs=5]

Each run is a fresh process (``sys.executable``, the package from this
checkout) on a fresh directory, so nothing is shared but the cache and the
page cache. Prints the machine, then per case the median of the runs of

- ``in-process``: from before ``import agent_session`` to the first call's
  answer (``open_sessions`` + ``stats()``), as the child measures it;
- ``process``: from spawning the child to its exit, interpreter start-up
  and shutdown included.

The target is a warm in-process time of 150 ms or less.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

PACKAGE = Path(__file__).resolve().parents[1]

CHILD = """
import json, sys, time
t = time.perf_counter()
import agent_session
sessions = agent_session.open_sessions(sys.argv[1], durable=False)
sessions.stats()
elapsed = time.perf_counter() - t
print(json.dumps({"seconds": elapsed, "origin": agent_session.component_origin()}))
"""


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_once(cache: Path, work: Path) -> Dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(PACKAGE), "AGENT_SESSION_CACHE_DIR": str(cache)}
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(work)],
        env=env, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    process = time.perf_counter() - started
    child = json.loads(out.stdout)
    return {"in_process": child["seconds"], "process": process, "origin": child["origin"]}


def case(name: str, runs: int, scratch: Path, warm: bool) -> Dict[str, float]:
    warm_cache = scratch / "warm-cache"
    results: List[Dict[str, Any]] = []
    for i in range(runs):
        cache = warm_cache if warm else scratch / f"cold-cache-{i}"
        result = run_once(cache, scratch / f"{name}-{i}")
        expected = "cache" if warm else "compiled"
        if result["origin"] != expected:
            raise SystemExit(f"{name} run {i}: the component was {result['origin']}, not {expected}")
        results.append(result)
    return {
        key: statistics.median(r[key] for r in results) * 1000 for key in ("in_process", "process")
    }


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    if not 1 <= runs <= 100:
        raise SystemExit("runs: 1 to 100")
    # The load says whether other work (a build) shared the cores.
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"machine: {cpu_model()}, {os.cpu_count()} cores (load {load}); "
        f"Python {platform.python_version()}"
    )
    with tempfile.TemporaryDirectory(prefix="agent-session-bench-") as tmp:
        scratch = Path(tmp)
        # Fills the warm cache (and the page cache with the package's files).
        run_once(scratch / "warm-cache", scratch / "fill")
        cold = case("cold", runs, scratch, warm=False)
        warm = case("warm", runs, scratch, warm=True)
    print(f"open + first call, median of {runs} fresh processes:")
    for name, figures in (("cold cache", cold), ("warm cache", warm)):
        print(
            f"  {name}: in-process {figures['in_process']:.0f} ms, "
            f"process {figures['process']:.0f} ms"
        )
    verdict = "met" if warm["in_process"] <= 150 else "missed"
    print(f"target (warm in-process <= 150 ms): {verdict}")


if __name__ == "__main__":
    main()
