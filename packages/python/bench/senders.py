"""The Python side of the webhook sender benchmark (host/benches/senders.rs):
operation latency with an endpoint and this process's sender delivering to
the bench's receiver, next to no endpoint.

    python packages/python/bench/senders.py <dir> <receiver url|none> [sessions=100]

In <dir> (fresh), through the package's public API (``open_sessions(dir,
webhooks=Webhooks(deliver=True))`` when a receiver is given): for each
session, start, iterate, complete, each timed alone (2 notifications per
session). Then, with a receiver, it waits (at most 60 s) until every
delivery is recorded.

stdout: one line of JSON: {"op_us": {"median", "p99", "n"}, "drain_ms"}.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent_session import Webhooks, open_sessions  # noqa: E402

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def main() -> int:
    if len(sys.argv) < 3:
        print("usage: senders.py <dir> <receiver url|none> [sessions]", file=sys.stderr)
        return 2
    directory, url = sys.argv[1], sys.argv[2]
    sessions = int(sys.argv[3]) if len(sys.argv) > 3 else 100
    with_hook = url != "none"
    s = open_sessions(
        directory,
        webhook_allow=["127.0.0.1"],
        webhooks=Webhooks(deliver=True) if with_hook else None,
    )
    if with_hook:
        s.set_webhook(url=url, secret=SECRET)
    times = []

    def timed(f):  # type: ignore[no-untyped-def]
        t = time.perf_counter_ns()
        out = f()
        times.append((time.perf_counter_ns() - t) / 1000)
        return out

    for i in range(sessions):
        a = timed(lambda: s.start(task=f"bench {i}"))
        timed(lambda: s.iterate(a.id, {"step": 1}))
        timed(lambda: s.complete(a.id))
    last = time.perf_counter()
    drain_ms = None
    if with_hook:
        deadline = last + 60
        while True:
            ds = s.deliveries()
            if len(ds) == 2 * sessions and all(d.state != "pending" for d in ds):
                break
            if time.perf_counter() > deadline:
                raise SystemExit("the deliveries did not settle in 60 s")
            time.sleep(0.01)
        drain_ms = (time.perf_counter() - last) * 1000
    s.close()
    times.sort()
    at = lambda p: times[min(len(times) - 1, int(p * len(times)))]  # noqa: E731
    print(json.dumps({"op_us": {"median": at(0.5), "p99": at(0.99), "n": len(times)}, "drain_ms": drain_ms}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
