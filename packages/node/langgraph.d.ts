// Types of agent-session/langgraph (src/langgraph.js): LangGraph's
// checkpointer on agent-session. Needs @langchain/langgraph-checkpoint (a
// peer dependency).

import type { RunnableConfig } from '@langchain/core/runnables';
import {
  BaseCheckpointSaver,
  type ChannelVersions,
  type Checkpoint,
  type CheckpointListOptions,
  type CheckpointMetadata,
  type CheckpointTuple,
  type PendingWrite,
  type SerializerProtocol,
} from '@langchain/langgraph-checkpoint';
import type { Sessions, SyncSessions } from './index.js';

/** The mode of the sessions that are LangGraph threads ("langgraph"). */
export const MODE: 'langgraph';

export interface AgentSessionSaverOptions {
  /** The serializer of values (default: LangGraph's JsonPlusSerializer). */
  serde?: SerializerProtocol;
  /** The task of the sessions started for threads. Default: "LangGraph thread". */
  task?: string;
}

/**
 * LangGraph's checkpointer on agent-session: a thread is a session whose
 * key is the thread id (mode "langgraph"), started when the thread is
 * first written. Checkpoints, their channel values and pending writes are
 * events of its history (large values beside it, up to 32 MiB each).
 */
export class AgentSessionSaver extends BaseCheckpointSaver {
  /**
   * @param store a directory (opened in a worker shared by every adapter of
   *   the process on it, closed with the last of them), or sessions already
   *   opened (`openSessions`, `openSessionsSync`), which stay open
   */
  constructor(store: string | Sessions | SyncSessions, options?: AgentSessionSaverOptions);
  getTuple(config: RunnableConfig): Promise<CheckpointTuple | undefined>;
  list(config: RunnableConfig, options?: CheckpointListOptions): AsyncGenerator<CheckpointTuple>;
  put(
    config: RunnableConfig,
    checkpoint: Checkpoint,
    metadata: CheckpointMetadata,
    newVersions: ChannelVersions,
  ): Promise<RunnableConfig>;
  putWrites(config: RunnableConfig, writes: PendingWrite[], taskId: string, taskPath?: string): Promise<void>;
  /** Remove the thread (its session and history); nothing if there is none. */
  deleteThread(threadId: string): Promise<void>;
  /** Copy every checkpoint and write of a thread into another (ids kept),
   * starting the target if needed; a missing source copies nothing. */
  copyThread(sourceThreadId: string, targetThreadId: string): Promise<void>;
  /** Drop the checkpoints (with their writes) whose metadata `run_id` is
   * one of `runIds`, in every thread (recorded as events). */
  deleteForRuns(runIds: string[]): Promise<void>;
  /** `keep_latest` (default): keep only the latest checkpoint of each
   * namespace of these threads; `delete`: delete the threads. */
  prune(threadIds: string[], options?: { strategy?: 'keep_latest' | 'delete' }): Promise<void>;
  /** Close the sessions opened from a directory once no other adapter of
   * this process uses them. */
  close(): Promise<void>;
}
