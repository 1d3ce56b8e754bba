import { describe, expect, it } from 'vitest';
import { PUSH_NODE_FLAGS, missingPushNodeFlags } from '../../src/backends/push/node-flags.js';

describe('the V8 flags of a push node', () => {
  it('are missing when neither the command line nor NODE_OPTIONS gives them', () => {
    expect(missingPushNodeFlags([], '')).toEqual([...PUSH_NODE_FLAGS]);
    expect(missingPushNodeFlags(['--enable-source-maps'], '--max-old-space-size=4096')).toEqual([...PUSH_NODE_FLAGS]);
  });

  it('are given by name, on the command line or in NODE_OPTIONS, whatever value an operator chose', () => {
    expect(missingPushNodeFlags(['--max-semi-space-size=32'], '')).toEqual([]);
    expect(missingPushNodeFlags([], ' --inspect  --max-semi-space-size=128 ')).toEqual([]);
  });
});
