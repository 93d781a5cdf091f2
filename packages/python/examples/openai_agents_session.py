"""An OpenAI Agents SDK conversation kept in a session directory.

    python examples/openai_agents_session.py [directory] [message]

Runs one turn of an agent on conversation "demo" and prints what the model
was given: run it twice with the same directory and the second run's model
sees the first run's messages. The model is a stand-in that answers
without any network (use a real one in practice); tracing is off.
Needs ``pip install openai-agents``.
"""

import asyncio
import sys
import tempfile

from agents import Agent, Runner, set_tracing_disabled
from agents.items import ModelResponse
from agents.models.interface import Model
from agents.usage import Usage
from openai.types.responses import ResponseOutputMessage, ResponseOutputText

from agent_session.openai_agents import AgentSession


class EchoModel(Model):
    """Answers with how many input items it was given (no network)."""

    async def get_response(self, system_instructions, input, *args, **kwargs):  # type: ignore[no-untyped-def]
        text = f"I have seen {len(input)} messages" if isinstance(input, list) else "hello"
        message = ResponseOutputMessage(
            id="msg_echo", type="message", role="assistant", status="completed",
            content=[ResponseOutputText(type="output_text", text=text, annotations=[])],
        )  # fmt: skip
        return ModelResponse(output=[message], usage=Usage(), response_id=None)

    def stream_response(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise NotImplementedError


async def main() -> None:
    directory = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp()
    message = sys.argv[2] if len(sys.argv) > 2 else "hello"
    set_tracing_disabled(True)
    agent = Agent(name="assistant", instructions="Be brief.", model=EchoModel())
    # session = SQLiteSession("demo", "conversations.db")   # the SDK's own
    session = AgentSession("demo", directory)  # the one-line swap
    result = await Runner.run(agent, message, session=session)
    print("answer:", result.final_output)
    print(f"items of conversation 'demo' in {directory}: {len(await session.get_items())}")
    session.close()


asyncio.run(main())
