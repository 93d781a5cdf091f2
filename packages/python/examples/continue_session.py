"""Continue a session another host (e.g. the Rust CLI) started.

    python examples/continue_session.py <dir> <session-id> <pause|complete>

Resumes the session if it is paused, counts one iteration with data
{"host": "python"}, records a learning, then pauses it ("handed on by
python") or completes it with result {"by": "python"}, and prints the
session as JSON.
"""

import dataclasses
import json
import sys
from pathlib import Path

# Run from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent_session import SessionError, open_sessions  # noqa: E402


def main(argv: list) -> int:
    if len(argv) != 4 or argv[3] not in ("pause", "complete"):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    directory, session_id, then = argv[1:]
    try:
        with open_sessions(directory) as sessions:
            if sessions.get(session_id).status == "paused":
                sessions.resume(session_id)
            sessions.iterate(session_id, {"host": "python"})
            sessions.record_learning(session_id, insight="the python host continued this session")
            if then == "pause":
                final = sessions.pause(session_id, "handed on by python")
            else:
                final = sessions.complete(session_id, {"by": "python"})
    except SessionError as e:
        print(f"error ({e.code}): {e.message}", file=sys.stderr)
        return 1
    print(json.dumps(dataclasses.asdict(final), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
