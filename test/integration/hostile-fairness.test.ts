import { afterAll, beforeAll, expect, it } from 'vitest';
import { MiB, Watch, WindowFiller } from '../helpers/hostile.js';
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
 * The canary's round trips against the fillers' own, on the same proxy and backend at the same moment:
 * on a machine busy with other work both slow down together, so the ratio is what shows whether a light
 * session waits behind the heavy sessions' backlog, or only for its turn. Measured at load 11-23 on this
 * 2-core machine: 0.15-0.25 now, 1.8 on 5ea229b (whose canary echo also often never came within 2 s). The bench checks the absolute target, p99 < 100 ms, on a quiet
 * machine.
 */
const CANARY_TO_FILLER_P50 = 0.5;
/** A round trip slower than this counts as lost (only a stall of the whole machine comes near it now). */
const CANARY_BOUND_MS = 5_000;

let stack: EchoStack;

beforeAll(async () => {
  stack = await startEchoStack();
});

afterAll(() => stack?.stop());

it('row 8: 50 connections filling their windows with echo traffic; a light client is still answered promptly', async () => {
  const fillers = await Promise.all(Array.from({ length: 50 }, async (_, i) => WindowFiller.start(stack.proxy.port, await testToken(`heavy-${i}`))));
  const watch = await Watch.start(stack.proxy, { canaryUser: 'light', intervalMs: 20, boundMs: CANARY_BOUND_MS, rssBound: RSS_BOUND });
  await new Promise((r) => setTimeout(r, ATTACK_MS));
  const report = await watch.check();
  const carried = fillers.reduce((sum, f) => sum + f.received, 0);
  const fillerLatencies = fillers.flatMap((f) => f.latencies).sort((a, b) => a - b);
  const fillerP50 = fillerLatencies[Math.floor(fillerLatencies.length / 2)]!;
  for (const f of fillers) f.stop();
  expect(report.answered).toBeGreaterThan(3);
  expect(report.p50Ms / fillerP50).toBeLessThan(CANARY_TO_FILLER_P50);
  // The fillers were really moving data meanwhile, not stuck.
  expect(carried).toBeGreaterThan(20 * MiB);
}, 60_000);
