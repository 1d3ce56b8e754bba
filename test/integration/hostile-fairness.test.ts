import { afterAll, beforeAll, expect, it } from 'vitest';
import { Canary, MiB, WindowFiller, memoryOf, resetPeak } from '../helpers/hostile.js';
import { type EchoStack, startEchoStack, testToken } from '../helpers/processes.js';

/**
 * Issue 8, row 8: 50 connections keep their windows full of echo traffic through the same proxy and the
 * same backend as a light client. Before, all of it shared one gRPC stream in arrival order and the
 * light client's echo stalled for seconds. BENCHMARKS.md ("hostile clients") measures the p99 on a quiet
 * machine against the 100 ms target; here the bounds leave room for a busy one.
 */

const RSS_BOUND = 300 * MiB;
const ATTACK_MS = 5_000;
/**
 * Stated bounds for the canary while the fillers run. The median carries the test: a busy machine
 * stretches the tail of both versions, while queueing behind the fillers' backlog (600-900 ms before)
 * shows in every round trip. The bench checks p99 < 100 ms on a quiet machine.
 */
const CANARY_P50_MS = 450;
const CANARY_P99_MS = 1_000;
const CANARY_MAX_MS = 2_000;

let stack: EchoStack;

beforeAll(async () => {
  stack = await startEchoStack();
});

afterAll(() => stack?.stop());

it('row 8: 50 connections filling their windows with echo traffic; a light client is still answered promptly', async () => {
  const pid = stack.proxy.child.pid!;
  const fillers = await Promise.all(Array.from({ length: 50 }, async (_, i) => WindowFiller.start(stack.proxy.port, await testToken(`heavy-${i}`))));
  resetPeak(pid);
  const canary = await Canary.start(stack.proxy.port, await testToken('light'), { intervalMs: 20, boundMs: CANARY_MAX_MS });
  await new Promise((r) => setTimeout(r, ATTACK_MS));
  const report = await canary.stop();
  const carried = fillers.reduce((sum, f) => sum + f.received, 0);
  for (const f of fillers) f.stop();
  expect(report.failures).toEqual([]);
  expect(report.p50Ms).toBeLessThan(CANARY_P50_MS);
  expect(report.p99Ms).toBeLessThan(CANARY_P99_MS);
  // The fillers were really moving data meanwhile, not stuck.
  expect(carried).toBeGreaterThan(50 * MiB);
  expect(memoryOf(pid).peak).toBeLessThan(RSS_BOUND);
  expect(stack.proxy.child.exitCode).toBeNull();
}, 60_000);
