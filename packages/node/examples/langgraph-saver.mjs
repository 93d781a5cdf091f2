// LangGraph with its checkpoints in agent-session: a graph that stops for
// a person's answer in one run (one process) and goes on in the next.
// Offline: no model, three plain functions. MemorySaver would forget the
// thread when the process ends; AgentSessionSaver keeps it on disk.
//
//   node examples/langgraph-saver.mjs [dir]   # "waiting for review"
//   node examples/langgraph-saver.mjs [dir]   # "finished", from the checkpoint

import { Annotation, Command, END, START, StateGraph, interrupt } from '@langchain/langgraph';
import { AgentSessionSaver } from 'agent-session/langgraph';

const State = Annotation.Root({
  steps: Annotation({ reducer: (a, b) => a.concat(b), default: () => [] }),
});

const graph = new StateGraph(State)
  .addNode('plan', () => ({ steps: ['plan'] }))
  .addNode('review', () => ({ steps: [`review: ${interrupt('ship it?')}`] }))
  .addNode('ship', () => ({ steps: ['ship'] }))
  .addEdge(START, 'plan')
  .addEdge('plan', 'review')
  .addEdge('review', 'ship')
  .addEdge('ship', END);

// const checkpointer = new MemorySaver();   // from '@langchain/langgraph'
const checkpointer = new AgentSessionSaver(process.argv[2] ?? './.agent-sessions');
const app = graph.compile({ checkpointer });
const config = { configurable: { thread_id: 'release-42' } };

if ((await app.getState(config)).next.includes('review')) {
  // An earlier run, in this process or another, stopped for the review.
  const done = await app.invoke(new Command({ resume: 'yes' }), config);
  console.log('finished:', done.steps.join(' -> '));
} else {
  const paused = await app.invoke({ steps: [] }, config);
  console.log(`waiting for review (${paused.__interrupt__[0].value}):`, paused.steps.join(' -> '));
}
