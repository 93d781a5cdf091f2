// A TypeScript program using the framework adapters the package exports
// (agent-session/langgraph, agent-session/openai-agents) with the
// frameworks' own types: type-checked with `tsc --strict --noEmit`
// (test/types.test.mjs), never run. The frameworks are the package's
// optional peer dependencies, so this one is checked in the repository
// (where they are development dependencies), not in the installed tarball.

import { Annotation, MemorySaver, StateGraph, START, END } from '@langchain/langgraph';
import type { BaseCheckpointSaver, CheckpointTuple } from '@langchain/langgraph-checkpoint';
import { Agent, MemorySession, run, type AgentInputItem, type Session } from '@openai/agents';
import { openSessions, openSessionsSync } from 'agent-session';
import { AgentSessionSaver, MODE } from 'agent-session/langgraph';
import { AgentSession } from 'agent-session/openai-agents';

export async function langgraph(): Promise<number> {
  const State = Annotation.Root({ n: Annotation<number>({ reducer: (_, b) => b, default: () => 0 }) });
  const graph = new StateGraph(State).addNode('inc', (s) => ({ n: s.n + 1 })).addEdge(START, 'inc').addEdge('inc', END);
  const memory: BaseCheckpointSaver = new MemorySaver();
  const ours: BaseCheckpointSaver = new AgentSessionSaver('./.agent-sessions');
  const app = graph.compile({ checkpointer: ours });
  const out = await app.invoke({ n: 1 }, { configurable: { thread_id: 't' } });
  const saver = new AgentSessionSaver(await openSessions({ dir: './s' }), { task: 'graph' });
  const tuple: CheckpointTuple | undefined = await saver.getTuple({ configurable: { thread_id: 't' } });
  await saver.copyThread('t', 'u');
  await saver.deleteForRuns(['run-1']);
  await saver.prune(['t'], { strategy: 'keep_latest' });
  // @ts-expect-error: a strategy is keep_latest or delete
  await saver.prune(['t'], { strategy: 'oldest' });
  await saver.deleteThread('u');
  await saver.close();
  const mode: 'langgraph' = MODE;
  // @ts-expect-error: a saver is made from a directory or opened sessions
  new AgentSessionSaver(42);
  void [memory, tuple, mode];
  return out.n;
}

export async function openaiAgents(): Promise<number> {
  const agent = new Agent({ name: 'assistant', instructions: 'be brief' });
  const theirs: Session = new MemorySession({ sessionId: 'c' });
  const ours: Session = new AgentSession({ sessionId: 'c', dir: './.agent-sessions' });
  const onThisThread = new AgentSession({ sessions: await openSessionsSync({ dir: './s' }) });
  await run(agent, 'hello', { session: ours });
  const items: AgentInputItem[] = await ours.getItems(10);
  const last: AgentInputItem | undefined = await onThisThread.popItem();
  await onThisThread.clearSession();
  await onThisThread.close();
  // @ts-expect-error: a directory or opened sessions, not both
  new AgentSession({ dir: './x', sessions: await openSessions({ dir: './y' }) });
  // @ts-expect-error: one of them is required
  new AgentSession({ sessionId: 'c' });
  void [theirs, last];
  return items.length;
}
