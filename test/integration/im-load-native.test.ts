import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LoadEngine, LoadOptions, StepPlan } from '../../bench/im-load-engine.js';
import { NativeLoadEngine } from '../../bench/im-load-native.js';
import { imRoutes } from '../helpers/im-cluster.js';
import { type RunningProcess, startEchoBackend, startImBackend, startProxy, testToken } from '../helpers/processes.js';

/**
 * The IM bench's native load engine (bench/native/im-load.c, driven by bench/im-load-native.ts) against a
 * real proxy in front of a real IM backend and echo backend: every send of a small step is acknowledged
 * and delivered, its latencies are those of a loopback round trip, and a refused send fails the step.
 * The bench's figures rest on these counts; the rates themselves are the bench's business.
 */

const USERS = 20;
/** Generous waits: on a busy 2-core machine a step's backlog can take seconds to clear. */
const PLAN: Omit<StepPlan, 'step' | 'rate'> = { ms: 3_000, settleMs: 20_000, deliverMs: 10_000 };
/** A loopback round trip slower than this is not a latency but a lost or miscounted message. */
const SANE_MS = 15_000;

let processes: RunningProcess[] = [];
let proxyPort = 0;
/** A proxy in front of an IM backend that lets a user send once a second (burst 2). */
let strictPort = 0;
const engines: LoadEngine[] = [];

beforeAll(async () => {
  // The bench's own flag: the product's 20 sends/s per user is not what this engine tests.
  const im = await startImBackend(['--send-rate', '100000']);
  const echo = await startEchoBackend();
  const strict = await startImBackend(['--send-rate', '1']);
  const routes = {
    version: 1,
    routes: [
      { business: 'im', pool: 'im', policy: 'consistent_hash', hash_key: 'user_id' },
      { business: 'echo', pool: 'echo' },
    ],
    pools: {
      im: { protocol: 'grpc', endpoints: [{ address: im.address }] },
      echo: { protocol: 'grpc', endpoints: [{ address: `127.0.0.1:${echo.port}` }] },
    },
  };
  const config = { connections: { max_per_address: 1_000 } };
  const proxy = await startProxy({ backends: [], routes, config });
  const strictProxy = await startProxy({ backends: [], routes: imRoutes([strict.address]), config });
  proxyPort = proxy.port;
  strictPort = strictProxy.port;
  processes = [proxy, strictProxy, im, echo, strict];
});

afterAll(async () => {
  for (const e of engines) e.close();
  await Promise.all(processes.map((p) => p.stop()));
});

async function start(business: LoadOptions['business'], users = USERS, port = proxyPort): Promise<LoadEngine> {
  const names = Array.from({ length: users }, (_, i) => `${business}-${port}-${i}`);
  const loadUsers = await Promise.all(names.map(async (name, i) => ({ name, partner: names[i ^ 1]!, token: await testToken(name) })));
  const engine = await NativeLoadEngine.start({ port, users: loadUsers, business, bodyBytes: 64, maxRate: 1_000, maxBehindS: 2 });
  engines.push(engine);
  return engine;
}

describe.each(['im', 'echo'] as const)('native IM load engine, business %s', (business) => {
  it('counts every send of a step as acknowledged and delivered once, with loopback latencies', async () => {
    const engine = await start(business);
    const rate = 100;
    for (const step of [1, 2]) {
      const stats = await engine.step({ ...PLAN, step, rate });
      const expected = (rate * PLAN.ms) / 1000;
      expect(stats).toMatchObject({ sent: expected, acked: expected, delivered: expected, overrun: false });
      // Each send timed once for its ack and once at its recipient: nothing counted twice or from the last step.
      expect(stats.ack.total).toBe(expected);
      expect(stats.recipient.total).toBe(expected);
      for (const h of [stats.ack, stats.recipient]) {
        expect(h.quantile(0.5)).toBeGreaterThan(0);
        expect(h.quantile(1)).toBeLessThan(SANE_MS);
      }
      // The pace rule's samples: sends of the step's second second and of its last (the third), apart.
      expect(stats.early.n).toBeGreaterThan(0);
      expect(stats.late.n).toBeGreaterThan(0);
      expect(stats.early.n + stats.late.n).toBeLessThan(expected);
      expect(stats.early.sum / stats.early.n).toBeLessThan(SANE_MS);
      expect(stats.cpuUs).toBeGreaterThan(0);
      await engine.drain(PLAN.settleMs, 0);
    }
  });
});

it('fails loudly when the IM backend refuses a send', async () => {
  // 50 sends/s per user against one a second (burst 2): RATE_LIMITED within the step.
  const engine = await start('im', 2, strictPort);
  await expect(engine.step({ ...PLAN, step: 1, rate: 100 })).rejects.toThrow(/exited \(1\)/);
});
