"""A checklist agent written in Python: the same agent-plugin world as the
Rust plugins, built with componentize-py and run by the same runtime.

It starts a session, works through a checklist (one iteration per item, a
tool call for the lint), pauses for approval, and completes when resumed.
"""

import json

import wit_world
from componentize_py_types import Err
from wit_world.imports import sessions
from wit_world.imports.types import SessionRef_Id, StartOptions, ToolCall

CHECKLIST = ("read the diff", "run the linter")


def _call(f, *args):
    """A session call; its error becomes the plugin's error message."""
    try:
        return f(*args)
    except Err as e:
        kind = type(e.value).__name__.removeprefix("SessionError_")
        raise Err(f"{kind}: {e.value.value}")


class WitWorld(wit_world.WitWorld):
    def run(self, task: str, config: str) -> str:
        options = StartOptions(
            key=None,
            task=task,
            mode="python",
            user_id=None,
            channel_id=None,
            max_iterations=10,
            context=json.dumps({"language": "python", "config": config}),
        )
        s = _call(sessions.start, options)
        for item in CHECKLIST:
            _call(sessions.iterate, SessionRef_Id(s.id), json.dumps({"item": item}))
        call = ToolCall(
            name="lint",
            input=json.dumps({"path": "."}),
            output=json.dumps({"problems": 0}),
            duration_ms=2,
        )
        _call(sessions.record_tool_call, SessionRef_Id(s.id), call)
        s = _call(sessions.pause, SessionRef_Id(s.id), "waiting for approval")
        return json.dumps({"session": s.id, "status": s.status.name.lower()})

    def resume(self, session_id: str) -> str:
        _call(sessions.resume, SessionRef_Id(session_id))
        s = _call(sessions.complete, SessionRef_Id(session_id), json.dumps({"approved": True}))
        return json.dumps({"session": s.id, "status": s.status.name.lower()})
