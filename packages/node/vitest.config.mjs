// vitest runs the suites written for it (test/*.spec.mjs: LangGraph's
// checkpointer validation); node:test runs test/*.test.mjs.
export default {
  test: {
    include: ['test/**/*.spec.mjs'],
    globals: true,
    testTimeout: 30_000,
    hookTimeout: 30_000,
  },
};
