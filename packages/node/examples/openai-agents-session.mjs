// The OpenAI Agents SDK with its conversation in agent-session: each run
// (each process) continues the conversation the last one left. Offline: a
// stand-in model that says how much of the conversation it was given
// (give the Agent a model name such as 'gpt-5' and set OPENAI_API_KEY for
// a real one). MemorySession would forget the conversation when the
// process ends; AgentSession keeps it on disk.
//
//   node examples/openai-agents-session.mjs [dir] [text]   # 2 items
//   node examples/openai-agents-session.mjs [dir] [text]   # 4 items: the model saw the first turn

import { Agent, Usage, run, setTracingDisabled } from '@openai/agents';
import { AgentSession } from 'agent-session/openai-agents';

setTracingDisabled(true);

const model = {
  async getResponse(request) {
    const text = `I was given ${request.input.length} item(s) of this conversation.`;
    const message = { type: 'message', role: 'assistant', status: 'completed', content: [{ type: 'output_text', text }] };
    return { usage: new Usage(), output: [{ id: `msg_${request.input.length}`, ...message }] };
  },
  async *getStreamedResponse() {
    throw new Error('this stand-in model does not stream');
  },
};
const agent = new Agent({ name: 'assistant', instructions: 'Answer briefly.', model });

// const session = new MemorySession({ sessionId: 'user-42' });   // from '@openai/agents'
const session = new AgentSession({ sessionId: 'user-42', dir: process.argv[2] ?? './.agent-sessions' });
const result = await run(agent, process.argv[3] ?? 'hello', { session });
console.log(result.finalOutput);
console.log(`${(await session.getItems()).length} items in the conversation`);
