// LangGraph's own checkpointer suite (@langchain/langgraph-checkpoint-validation)
// against AgentSessionSaver, each checkpointer on a fresh directory (the
// suite needs every one to start empty), removed when the suite is done
// with it; then its opt-in delta-channel history tests. Run by vitest with its globals (`npm test`: vitest.config.mjs).

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { deltaChannelHistoryTests, validate } from '@langchain/langgraph-checkpoint-validation';
import { AgentSessionSaver } from '../src/langgraph.js';

const dirs = new Map();

const initializer = {
  // Not "MemorySaver": the suite skips its channel-delta test for that name.
  checkpointerName: 'AgentSessionSaver',
  createCheckpointer() {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-session-lg-validate-'));
    const saver = new AgentSessionSaver(dir);
    dirs.set(saver, dir);
    return saver;
  },
  async destroyCheckpointer(saver) {
    await saver.close();
    fs.rmSync(dirs.get(saver), { recursive: true, force: true });
    dirs.delete(saver);
  },
};

validate(initializer);
// The suite's opt-in tests of `getDeltaChannelHistory` (the base class's
// walk over getTuple and parentConfig), not part of validate().
deltaChannelHistoryTests(initializer);
