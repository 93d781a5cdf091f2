#!/usr/bin/env python3
"""The Python side of the side-by-side host benchmark.

host/benches/hosts.rs runs the same workload in Rust in-process, then spawns
this script and packages/node/bench/workload.mjs, and prints one table::

    python packages/python/bench/workload.py <dir> [sessions=20] [appends=200]

(with a Python that has wasmtime, e.g. target/py-host-venv/bin/python; the
package is imported from this checkout, no install needed.)

``<dir>`` is a fresh empty directory the caller made; the sessions are opened
in it through the package's public API (``open_sessions(dir)``, durable, the
default: every append is fdatasync'ed). The workload, identical in every
host:

1. start ``sessions`` sessions (task "bench", mode "bench");
2. warm-up: 5 ``record_tool_call`` on one more, throwaway session (not timed);
3. for each session in turn, ``appends`` ``record_tool_call``, one at a time,
   each timed alone: tool "search", input ``{"q": QUERY}``, output
   ``{"hits": 3}``, duration 12 ms. ``QUERY`` (below) is 347 characters,
   which makes the stored event 512 bytes (a 20-byte frame header + 492 bytes
   of JSON) at a two-digit seq, 511 / 513 at one / three digits;
4. for each session, 10 times in a row: read the last 10 events with
   ``events(id, event_count - 10, 10)``, each call timed alone. (The API also
   has ``recent_events(id)``, the last 10; ``events`` with the computed
   ``from_`` is used so that every host does the same call.)

stdout: one line of JSON, nothing else::

    {"host": "python", "record_tool_call_us": {"median", "p90", "p99", "n"},
     "read_last_10_us": {"median", "p90", "n"}, "open_ms", "version"}

Times are µs (one decimal) from ``time.perf_counter_ns()``; percentile p of n
sorted samples is ``sample[min(n - 1, floor(p * n))]``, so the median is
``sample[n // 2]``, as in host/benches/common. ``open_ms`` is the time of
``open_sessions`` (compiling the component, instantiating it, opening the
store); importing the package (and wasmtime) is not in it.

Bounded: sessions 1..1000, appends 1..100000, and a watchdog
(``faulthandler``, a C thread, so it fires even inside a wasm call) that
dumps the stack and exits after ``BENCH_TIMEOUT_S`` seconds (default 600).
Any failure: a message on stderr, exit status 1 (2 for bad arguments).
``BENCH_VERBOSE=1`` prints a summary (and the import time) on stderr.
"""

from __future__ import annotations

import faulthandler
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Dict, List, NoReturn, Sequence, Tuple

PHRASE = "how do durable agent sessions store tool calls on disk? "
# 347 characters of text (the phrase repeated, cut).
QUERY = (PHRASE * (347 // len(PHRASE) + 1))[:347]
TOOL_CALL = dict(name="search", input={"q": QUERY}, output={"hits": 3}, duration_ms=12)
WARMUP = 5
READS_PER_SESSION = 10
LAST = 10

VERBOSE = os.environ.get("BENCH_VERBOSE") == "1"


def log(msg: str) -> None:
    if VERBOSE:
        print(f"workload.py: {msg}", file=sys.stderr, flush=True)


def usage(msg: str) -> NoReturn:
    print(f"workload.py: {msg}\nusage: workload.py <dir> [sessions=20] [appends=200]", file=sys.stderr)
    sys.exit(2)


def int_arg(args: Sequence[str], i: int, default: int, name: str, top: int) -> int:
    if len(args) <= i:
        return default
    text = args[i]
    if not text.isascii() or not text.isdigit():
        usage(f"{name} must be a whole number, got {text!r}")
    n = int(text)
    if not 1 <= n <= top:
        usage(f"{name} must be between 1 and {top}, got {n}")
    return n


def summary(samples: List[float], percentiles: Sequence[Tuple[str, float]]) -> Dict[str, float]:
    s = sorted(samples)
    at = lambda p: round(s[min(len(s) - 1, int(p * len(s)))], 1)  # noqa: E731
    out: Dict[str, float] = {"median": at(0.5)}
    for key, p in percentiles:
        out[key] = at(p)
    out["n"] = len(s)
    return out


def version() -> str:
    from importlib import metadata

    try:
        wasmtime = metadata.version("wasmtime")
    except metadata.PackageNotFoundError:
        wasmtime = "?"
    return f"python {platform.python_version()} ({platform.python_implementation()}), wasmtime-py {wasmtime}"


def run(args: Sequence[str]) -> Dict[str, object]:
    if not args or not args[0]:
        usage("<dir> is required")
    if len(args) > 3:
        usage(f"unexpected arguments: {' '.join(args[3:])}")
    directory = args[0]
    n_sessions = int_arg(args, 1, 20, "sessions", 1000)
    n_appends = int_arg(args, 2, 200, "appends", 100_000)
    try:
        timeout = float(os.environ.get("BENCH_TIMEOUT_S", "600"))
    except ValueError:
        usage(f"BENCH_TIMEOUT_S must be a number, got {os.environ['BENCH_TIMEOUT_S']!r}")
    if not timeout > 0:
        usage(f"BENCH_TIMEOUT_S must be positive, got {timeout}")
    faulthandler.dump_traceback_later(timeout, exit=True)

    if not os.path.isdir(directory):
        raise RuntimeError(f"{directory} is not a directory (the caller makes a fresh empty one)")
    if os.listdir(directory):
        raise RuntimeError(f"{directory} is not empty")

    # The package's public API, from this checkout.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    t0 = time.perf_counter_ns()
    from agent_session import open_sessions

    import_ms = (time.perf_counter_ns() - t0) / 1e6

    t0 = time.perf_counter_ns()
    s = open_sessions(directory)
    open_ms = (time.perf_counter_ns() - t0) / 1e6
    log(f"import {import_ms:.1f} ms, open_sessions {open_ms:.1f} ms")

    # 1. The sessions.
    ids = [s.start("bench", mode="bench").id for _ in range(n_sessions)]

    # 2. Warm-up, not timed.
    spare = s.start("bench", mode="bench").id
    for _ in range(WARMUP):
        s.record_tool_call(spare, **TOOL_CALL)

    # 3. Durable appends, each timed alone.
    clock = time.perf_counter_ns
    record = s.record_tool_call
    append_us: List[float] = []
    for n, sid in enumerate(ids, 1):
        for i in range(n_appends):
            a = clock()
            e = record(sid, **TOOL_CALL)
            b = clock()
            append_us.append((b - a) / 1000)
            if e.seq != i + 1 or e.kind != "tool_call":
                raise RuntimeError(
                    f"record_tool_call returned seq {e.seq} kind {e.kind}, expected seq {i + 1} kind tool_call"
                )
        log(f"appended {n_appends} to session {n}/{n_sessions}")

    # 4. The last 10 events, 10 times per session, each read timed alone.
    read_us: List[float] = []
    for sid in ids:
        count = s.get(sid).event_count
        if count != n_appends + 1:
            raise RuntimeError(f"session {sid} has {count} events, expected {n_appends + 1}")
        start = max(0, count - LAST)
        for _ in range(READS_PER_SESSION):
            a = clock()
            page = s.events(sid, start, LAST)
            b = clock()
            read_us.append((b - a) / 1000)
            got = page.events
            if len(got) != count - start or got[-1].seq != count - 1:
                raise RuntimeError(
                    f"events({sid}, {start}, {LAST}) returned {len(got)} events, expected {count - start}"
                )
    s.close()
    faulthandler.cancel_dump_traceback_later()

    result: Dict[str, object] = {
        "host": "python",
        "record_tool_call_us": summary(append_us, [("p90", 0.9), ("p99", 0.99)]),
        "read_last_10_us": summary(read_us, [("p90", 0.9)]),
        "open_ms": round(open_ms, 1),
        "version": version(),
    }
    log(json.dumps(result))
    return result


def main() -> int:
    try:
        result = run(sys.argv[1:])
    except SystemExit:
        raise
    except BaseException as e:  # noqa: BLE001  (report anything, exit 1)
        print(f"workload.py: {type(e).__name__}: {e}", file=sys.stderr)
        if VERBOSE:
            import traceback

            traceback.print_exc()
        return 1
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
