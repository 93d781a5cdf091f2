"""A load generator on Python: the directory-store counterpart of the Rust
one (host/examples/load.rs), with the same flags, the same operations, the
same op ids and the same output, so that the crash and concurrency checks
written for the Rust generator can run against this one, or against Rust,
Node and Python processes working on one directory at once.

    python examples/load.py --dir /tmp/root --sessions 3 --threads 2 --ops 100 --tag py1

Flags come in pairs: --dir D (default ./.agent-sessions), --sessions N (3,
at least 1), --threads T (2), --ops K (100 per thread), --tag TAG (the
process id). ``--store`` and ``--deliver`` of the Rust generator are not
supported (Python only has the directory store, and does not deliver
webhooks). A bad flag exits with 2, a failure to open the directory (or to
list or start sessions) with 1, the end of the work with 0.

The sessions: the newest resumable (active or paused) ones of ``list``,
topped up with new ones (task "load", max_iterations 1_000_000), each
printed as ``ack start-<tag> start <id>``. Then K operations per worker t,
op ids ``<tag>-<t>-<n>``, on session ids[(n + t) % N], by n % 5:

    0, 1: a tool call, input {"op": op}, output {"pad": "x" * (n % 7 * 300)},
          duration n ms                         (kind ``tool``)
    2, 3: an iteration with data {"op": op}     (kind ``iterate``)
    4:    pause with reason op, or resume if the session is paused
          (kind ``pause`` / ``resume``; ``get`` if reading the status failed)

Each call's outcome is one line on stdout::

    ack <op> <kind> <id>                the host acknowledged it
    conflict <op> <kind> <id>           SessionError ``conflict``
    refused <op> <kind> <id>            SessionError ``invalid-transition``
    error <op> <kind> <id> <message>    anything else

written with os.write(1, ...) before the next call, so that a process
killed (SIGKILL) at any moment has printed exactly what was acknowledged
before it.

Threads: calls into the component are serialized per process (see
``Sessions``), so Python threads would add nothing but scheduling noise;
the T "threads" are logical workers interleaved on one thread: for each n,
workers t = 0..T-1 take their turn. The op ids, kinds and sessions are
those the Rust threads would produce; only the interleaving within this
process differs. The concurrency that matters -- this process writing while
OTHER processes (Rust, Node, Python) write the same sessions -- is real.
"""

import os
import re
import sys
from pathlib import Path

# Run from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent_session import SessionError, open_sessions  # noqa: E402

FLAGS = "--dir, --sessions, --threads, --ops, --tag"


class Usage(Exception):
    pass


def parse(argv: list) -> dict:
    a = {
        "dir": "./.agent-sessions",
        "sessions": 3,
        "threads": 2,
        "ops": 100,
        "tag": str(os.getpid()),
    }
    for i in range(0, len(argv), 2):
        flag = argv[i]
        if i + 1 >= len(argv):
            raise Usage(f"{flag} needs a value")
        value = argv[i + 1]

        def number() -> int:
            if not re.fullmatch(r"\+?[0-9]+", value):
                raise Usage(f"{flag} needs a number, got {value!r}")
            return int(value)

        if flag == "--dir":
            a["dir"] = value
        elif flag in ("--sessions", "--threads", "--ops"):
            a[flag[2:]] = number()
        elif flag == "--tag":
            a["tag"] = value
        elif flag in ("--store", "--deliver"):
            raise Usage(f"{flag} is only supported by the Rust load generator; expected {FLAGS}")
        else:
            raise Usage(f"unknown argument {flag}; expected {FLAGS}")
    if a["sessions"] == 0:
        raise Usage("--sessions must be at least 1")
    return a


def say(line: str) -> None:
    """One line on stdout, in the pipe before this returns."""
    data = (line + "\n").encode()
    while data:
        data = data[os.write(1, data):]


def describe(e: BaseException) -> str:
    """A failure as the rest of an ``error`` line: on one line."""
    text = f"{e.code}: {e.message}" if isinstance(e, SessionError) else f"{type(e).__name__}: {e}"
    return " ".join(text.split())


def operation(host, n: int, sid: str, op: str):
    """Operation n (of some worker) on session sid: its kind, and a function
    that runs it."""
    r = n % 5
    if r in (0, 1):
        return "tool", lambda: host.record_tool_call(
            sid, name="load", input={"op": op}, output={"pad": "x" * (n % 7 * 300)}, duration_ms=n
        )
    if r in (2, 3):
        return "iterate", lambda: host.iterate(sid, {"op": op})
    try:
        status = host.get(sid).status
    except Exception as e:  # noqa: BLE001 -- reported as an `error` line
        failure = e

        def fail():
            raise failure

        return "get", fail
    if status == "paused":
        return "resume", lambda: host.resume(sid)
    return "pause", lambda: host.pause(sid, op)


def main(argv: list) -> int:
    try:
        args = parse(argv[1:])
    except Usage as e:
        print(f"load.py: {e}", file=sys.stderr)
        return 2
    try:
        host = open_sessions(args["dir"])
        # The sessions to work on: the newest active or paused ones, topped
        # up with new ones.
        ids = [s.id for s in host.list(limit=100).sessions if s.status in ("active", "paused")]
        ids = ids[: args["sessions"]]
        while len(ids) < args["sessions"]:
            s = host.start("load", max_iterations=1_000_000)
            say(f"ack start-{args['tag']} start {s.id}")
            ids.append(s.id)
    except Exception as e:  # noqa: BLE001
        print(f"load.py: {args['dir']}: {describe(e)}", file=sys.stderr)
        return 1

    tag = args["tag"]
    for n in range(args["ops"]):
        for t in range(args["threads"]):
            sid = ids[(n + t) % len(ids)]
            op = f"{tag}-{t}-{n}"
            kind, run = operation(host, n, sid, op)
            try:
                run()
                line = f"ack {op} {kind} {sid}"
            except SessionError as e:
                if e.code == "conflict":
                    line = f"conflict {op} {kind} {sid}"
                # Another writer paused (or resumed) first.
                elif e.code == "invalid-transition":
                    line = f"refused {op} {kind} {sid}"
                else:
                    line = f"error {op} {kind} {sid} {describe(e)}"
            except Exception as e:  # noqa: BLE001 -- a trap, reported like the rest
                line = f"error {op} {kind} {sid} {describe(e)}"
            say(line)
    host.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
