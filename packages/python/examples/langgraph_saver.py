"""A LangGraph graph whose checkpoints live in a session directory.

    python examples/langgraph_saver.py [directory]

Runs a two-node graph on thread "demo" twice (a second run continues the
thread), then prints the state and the thread's checkpoint history. Run
it again with the same directory: the thread goes on where it was.
Needs ``pip install langgraph``; no model, no network.
"""

import operator
import sys
import tempfile
from typing import Annotated, List, TypedDict

from langgraph.graph import END, START, StateGraph

from agent_session.langgraph import AgentSessionSaver


class State(TypedDict):
    count: Annotated[int, operator.add]
    log: Annotated[List[str], operator.add]


def count(state: State) -> dict:
    return {"count": 1, "log": [f"count -> {state['count'] + 1}"]}


def report(state: State) -> dict:
    return {"log": [f"report at {state['count']}"]}


builder = StateGraph(State)
builder.add_node("count", count)
builder.add_node("report", report)
builder.add_edge(START, "count")
builder.add_edge("count", "report")
builder.add_edge("report", END)

directory = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp()
# checkpointer = InMemorySaver()          # LangGraph's own, in memory
checkpointer = AgentSessionSaver(directory)  # the one-line swap: durable, shared by processes
graph = builder.compile(checkpointer=checkpointer)

config = {"configurable": {"thread_id": "demo"}}
graph.invoke({"count": 0, "log": []}, config)
state = graph.invoke({"count": 0, "log": []}, config)
print("count:", state["count"])
print("log:", state["log"])
history = list(graph.get_state_history(config))
print(f"checkpoints of thread 'demo' in {directory}: {len(history)}")
checkpointer.close()
