"""Deliver a directory's queued webhook notifications from Python:
``python -m agent_session.deliver --dir DIR``. The same sender
``open_sessions(..., webhooks=Webhooks(deliver=True))`` runs in a process,
on its own, with the flags of the Rust CLI's ``agent-session deliver`` and
Node's ``agent-session-deliver``. One sender delivers from a directory at a
time, whatever its host; this one waits its turn.

Exit status: 0; 1 if ``--once`` found another sender delivering from the
directory; 2 for bad flags or a directory that cannot be opened.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
import threading
from typing import Any, List, Optional, Sequence

from ._root import DEFAULT_LOCK_TIMEOUT_MS
from .sessions import _open_deliverer, _sender_options, component_path, open_sessions
from .types import SessionError, Webhooks

PROG = "python -m agent_session.deliver"

DESCRIPTION = """\
Deliver the webhook notifications queued in DIR: signed (Standard
Webhooks), retried with backoff, every attempt recorded in DIR. Runs until
SIGINT/SIGTERM (finishing the attempts in flight) unless --once is given.
Only one sender delivers from a directory at a time (any host); this one
waits its turn."""

_UNITS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}


def duration_ms(text: str) -> int:
    """``500ms``, ``15s``, ``5m`` or ``2h`` in milliseconds (as the Rust
    CLI reads them)."""
    m = re.fullmatch(r"(\d+)(ms|s|m|h)", text.strip())
    if m is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration like 500ms, 15s, 5m or 2h"
        )
    return int(m.group(1)) * _UNITS[m.group(2)]


def _items(text: str) -> List[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def schedule(text: str) -> List[int]:
    """A comma-separated list of durations."""
    return [duration_ms(item) for item in _items(text)]


def count(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return n


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION)
    p.add_argument("--dir", required=True, help="the sessions directory")
    p.add_argument(
        "--allow",
        type=_items,
        default=[],
        metavar="LIST",
        help="exceptions to the address policy, comma-separated: addresses, "
        "ranges (10.0.0.0/8), host names",
    )
    p.add_argument(
        "--retry-schedule",
        type=schedule,
        default=None,
        metavar="LIST",
        help="delays before the retries, e.g. 5s,5m,30m,2h; after the last, a "
        'delivery is given up ("": after the first attempt; default '
        "5s,5m,30m,2h,5h,10h,10h)",
    )
    p.add_argument(
        "--timeout",
        type=duration_ms,
        default=15_000,
        metavar="DURATION",
        help="per request, to the response head (default 15s)",
    )
    p.add_argument(
        "--concurrency",
        type=count,
        default=16,
        metavar="N",
        help="requests in flight at once (default 16)",
    )
    p.add_argument(
        "--poll",
        type=duration_ms,
        default=1000,
        metavar="DURATION",
        help="how often to look for what others queued (default 1s)",
    )
    p.add_argument(
        "--once",
        action="store_true",
        help="attempt what is due now, wait, print a JSON report, exit",
    )
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parser().parse_args(argv)
    stop = threading.Event()
    if not args.once:
        # From the start: a signal while the component loads stops the
        # sender as cleanly as one later (not with a KeyboardInterrupt).

        def stopping(_signum: int, _frame: Any) -> None:
            stop.set()

        signal.signal(signal.SIGINT, stopping)
        signal.signal(signal.SIGTERM, stopping)
    # Read as open_sessions reads its `webhooks`.
    try:
        options = _sender_options(
            Webhooks(
                deliver=True,
                allow=args.allow,
                retry_schedule_ms=args.retry_schedule,
                timeout_ms=args.timeout,
                concurrency=args.concurrency,
                poll_ms=args.poll,
            ),
            [],
        )
        assert options is not None
        # Opened as every host opens a root first (a new one made, an old
        # format migrated, a lost index rebuilt); the sender has its own.
        open_sessions(args.dir).close()
        deliverer = _open_deliverer(
            component_path(), args.dir, True, DEFAULT_LOCK_TIMEOUT_MS, options
        )
    except (SessionError, FileNotFoundError) as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2
    if args.once:
        try:
            report = deliverer.once()
        except SessionError as e:
            print(f"{PROG}: {e.message}", file=sys.stderr)
            return 1 if e.code == "conflict" else 2
        finally:
            deliverer.stop()
        print(json.dumps(report), flush=True)
        return 0

    try:
        # A bad --allow rule is found here; the lock may be another's yet.
        deliverer.acquire()
    except SessionError as e:
        deliverer.stop()
        print(f"{PROG}: {e.message}", file=sys.stderr)
        return 2
    deliverer.run()
    # As every host's sender says it (its signal handlers are in place).
    print(f"delivering webhooks from {args.dir}/outbox (Ctrl-C to stop)", file=sys.stderr, flush=True)
    # A bounded wait, so that the signal handler (which runs on this thread
    # between waits) is never held up.
    while not stop.wait(1.0):
        pass
    deliverer.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
