"""Print what this host reads in a directory, in a form every host's dump
prints alike (the cross-host format test compares them): the listing,
every history, the stats.

    python examples/dump.py <dir>
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent_session import SessionError, open_sessions  # noqa: E402


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: dump.py <dir>", file=sys.stderr)
        return 2
    try:
        sessions = open_sessions(sys.argv[1])
        page = sessions.list(limit=1000)
        events = {
            s.id: [[e.seq, e.kind, e.data] for e in sessions.events(s.id, 0, 1000).events]
            for s in page.sessions
        }
        st = sessions.stats()
        print(
            json.dumps(
                {
                    "sessions": [
                        [s.id, s.status, s.iteration, s.event_count, s.version, s.task]
                        for s in page.sessions
                    ],
                    "unreadable": list(page.unreadable),
                    "events": events,
                    "stats": {
                        "total": st.total,
                        "by_status": st.by_status,
                        "by_mode": st.by_mode,
                        "average_iterations": st.average_iterations,
                        "success_rate": st.success_rate,
                    },
                }
            )
        )
        sessions.close()
    except SessionError as e:
        print(f"{e.code}: {e.message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
