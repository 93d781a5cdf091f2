"""Child processes of the framework tests (test_frameworks.py): each
command opens the directory afresh, as a new process of an application
would, and prints one JSON line.

    framework_child.py graph-start <dir> <thread>     run the graph to its interrupt
    framework_child.py graph-resume <dir> <thread> <answer>
                                                      resume it, print the final state and history
    framework_child.py agent <dir> <session_id> <text>
                                                      one Runner turn with a fake model
    framework_child.py race <dir> <key> <ready_file> <go_file>
                                                      start(key=...) when <go_file> appears
"""

from __future__ import annotations

import asyncio
import json
import operator
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any, List, TypedDict

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# Every wait here is bounded.
WAIT_S = 30.0


class State(TypedDict):
    value: int
    log: Annotated[List[str], operator.add]
    answer: str


def graph(directory: str) -> Any:
    """Three deterministic nodes; the second asks for an answer
    (``interrupt``) before it goes on."""
    from langgraph.graph import END, START, StateGraph
    from langgraph.types import interrupt

    from agent_session.langgraph import AgentSessionSaver

    def double(state: State) -> dict:
        return {"value": state["value"] * 2, "log": ["double"]}

    def approve(state: State) -> dict:
        answer = interrupt({"question": "go on?", "value": state["value"]})
        return {"answer": answer, "log": [f"approve:{answer}"]}

    def add_ten(state: State) -> dict:
        return {"value": state["value"] + 10, "log": ["add_ten"]}

    builder = StateGraph(State)
    builder.add_node("double", double)
    builder.add_node("approve", approve)
    builder.add_node("add_ten", add_ten)
    builder.add_edge(START, "double")
    builder.add_edge("double", "approve")
    builder.add_edge("approve", "add_ten")
    builder.add_edge("add_ten", END)
    return builder.compile(checkpointer=AgentSessionSaver(directory))


def graph_start(directory: str, thread: str) -> None:
    config = {"configurable": {"thread_id": thread}}
    result = graph(directory).invoke({"value": 1, "log": [], "answer": ""}, config)
    interrupts = [i.value for i in result.get("__interrupt__", [])]
    print(json.dumps({"pid": os.getpid(), "value": result["value"], "log": result["log"],
                      "interrupts": interrupts}))


def graph_resume(directory: str, thread: str, answer: str) -> None:
    from langgraph.types import Command

    config = {"configurable": {"thread_id": thread}}
    g = graph(directory)
    before = g.get_state(config)
    result = g.invoke(Command(resume=answer), config)
    history = list(g.get_state_history(config))
    print(json.dumps({
        "pid": os.getpid(),
        "next_before": list(before.next),
        "state": {k: result[k] for k in ("value", "log", "answer")},
        "history": [
            {"id": h.config["configurable"]["checkpoint_id"],
             "parent": h.parent_config["configurable"]["checkpoint_id"] if h.parent_config else None,
             "next": list(h.next), "step": h.metadata.get("step")}
            for h in history
        ],
    }))


def agent(directory: str, session_id: str, text: str) -> None:
    from agents import Agent, Runner, set_tracing_disabled
    from agents.items import ModelResponse
    from agents.models.interface import Model
    from agents.usage import Usage
    from openai.types.responses import ResponseOutputMessage, ResponseOutputText

    from agent_session.openai_agents import AgentSession

    set_tracing_disabled(True)
    seen: List[Any] = []

    class FakeModel(Model):
        """Replies, without any network, with how many input items it saw."""

        async def get_response(self, system_instructions, input, *args, **kwargs):  # type: ignore[no-untyped-def]
            seen.append(input)
            n = len(input) if isinstance(input, list) else 1
            msg = ResponseOutputMessage(
                id=f"msg_{os.getpid()}", type="message", role="assistant", status="completed",
                content=[ResponseOutputText(type="output_text", text=f"saw {n}", annotations=[])],
            )
            return ModelResponse(output=[msg], usage=Usage(), response_id=None)

        def stream_response(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            raise NotImplementedError

    async def main() -> None:
        session = AgentSession(session_id, directory)
        assistant = Agent(name="assistant", instructions="be terse", model=FakeModel())
        result = await Runner.run(assistant, text, session=session)
        items = await session.get_items()
        session.close()
        print(json.dumps({"pid": os.getpid(), "output": result.final_output,
                          "model_input": seen[0], "items": items}))

    asyncio.run(main())


def race(directory: str, key: str, ready: str, go: str) -> None:
    from agent_session import open_sessions

    sessions = open_sessions(directory)  # loaded before the race
    Path(ready).write_text(str(os.getpid()))
    deadline = time.monotonic() + WAIT_S
    while not os.path.exists(go):
        if time.monotonic() > deadline:
            raise SystemExit("no go file")
        time.sleep(0.001)
    s = sessions.start("raced", key=key, mode="race")
    print(json.dumps({"pid": os.getpid(), "id": s.id, "key": s.key}))


if __name__ == "__main__":
    commands = {"graph-start": graph_start, "graph-resume": graph_resume, "agent": agent, "race": race}
    commands[sys.argv[1]](*sys.argv[2:])
