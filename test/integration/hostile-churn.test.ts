import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FrameType } from '../../src/protocol/constants.js';
import { underAttack } from '../helpers/hostile.js';
import { metricValue } from '../helpers/metrics.js';
import { RawClient } from '../helpers/raw-client.js';
import { type RedisServer, startRedisServer } from '../helpers/redis-server.js';
import { type EchoStack, type RunningProcess, startEchoBackend, startEchoStack, startProxy, testToken } from '../helpers/processes.js';

/**
 * Issue 8, row 7: OPEN+RESET churn spread over many connections of one user, each connection under its
 * own OPEN/RESET rate. The user's OPENs are limited across all its connections (users.open_rate, burst
 * users.open_burst): over it, OPEN_FAIL RATE_LIMITED with a retry hint. With users.redis_url the count
 * is shared by every proxy of the fleet.
 */

const RATE = 20;
const BURST = 20;
const SECONDS = 4;

/**
 * `connections` connections of one user on `ports` (round robin), each sending OPEN then RESET every
 * `everyMs` for `SECONDS`: under the per-connection OPEN/RESET rate. Resolves with the answers to the OPENs.
 */
async function churn(ports: number[], token: string, connections: number, everyMs: number): Promise<Map<string, number>> {
  const answers = new Map<string, number>();
  const clients = await Promise.all(Array.from({ length: connections }, (_, i) => RawClient.handshake(ports[i % ports.length]!, token)));
  const deadline = Date.now() + SECONDS * 1_000;
  await Promise.all(
    clients.map(async (c) => {
      let id = 0;
      while (Date.now() < deadline) {
        id++;
        c.open(id);
        c.reset(id);
        await new Promise((r) => setTimeout(r, everyMs));
      }
      // Every OPEN was answered (OPEN_OK or OPEN_FAIL) before its RESET was read.
      for (let i = 1; i <= id; i++) {
        const f = await Promise.race([c.next(FrameType.OPEN_OK, i), c.next(FrameType.OPEN_FAIL, i)]);
        const answer = f.type === FrameType.OPEN_OK ? 'OPEN_OK' : RawClient.codeOf(f);
        answers.set(answer, (answers.get(answer) ?? 0) + 1);
      }
      expect(c.frames.filter((f) => f.type === FrameType.GOAWAY || f.type === FrameType.ERROR)).toEqual([]);
      c.destroy();
    }),
  );
  return answers;
}

const opened = (adminPort: number): Promise<number> => metricValue(adminPort, 'livemux_sessions_opened_total', 'business="echo",result="ok"');

describe('row 7: one user churning sessions over 20 connections, on one proxy', () => {
  let stack: EchoStack;
  beforeAll(async () => {
    stack = await startEchoStack({ users: { open_rate: RATE, open_burst: BURST } });
  });
  afterAll(() => stack?.stop());

  it('admits about open_burst + open_rate × seconds OPENs; the rest get OPEN_FAIL RATE_LIMITED', async () => {
    let before = 0;
    const answers = await underAttack(stack.proxy, async () => {
      before = await opened(stack.proxy.adminPort); // after the canary's own OPEN
      return churn([stack.proxy.port], stack.token, 20, 25);
    });
    const admitted = (await opened(stack.proxy.adminPort)) - before;
    expect(answers.get('OPEN_OK')).toBe(admitted);
    expect(admitted).toBeLessThanOrEqual(BURST + RATE * (SECONDS + 1));
    expect(admitted).toBeGreaterThanOrEqual(RATE);
    expect(answers.get('RATE_LIMITED')).toBeGreaterThan(1_000);
    expect(await metricValue(stack.proxy.adminPort, 'livemux_limit_hits_total', 'limit="users.open_rate"')).toBeGreaterThan(1_000);
  }, 60_000);

  it('another user is not limited by the first one', async () => {
    const c = await RawClient.handshake(stack.proxy.port, await testToken('someone-else'));
    for (let id = 1; id <= BURST; id++) c.open(id);
    for (let id = 1; id <= BURST; id++) await c.next(FrameType.OPEN_OK, id);
    c.destroy();
  });
});

describe('the same churn over two proxies sharing users.redis_url', () => {
  let redis: RedisServer;
  let backend: RunningProcess & { port: number };
  let proxies: Awaited<ReturnType<typeof startProxy>>[];
  let token: string;
  beforeAll(async () => {
    redis = await startRedisServer();
    backend = await startEchoBackend();
    const config = { users: { open_rate: RATE, open_burst: BURST, redis_url: redis.url } };
    proxies = await Promise.all([0, 1].map(() => startProxy({ backends: [`127.0.0.1:${backend.port}`], config })));
    token = await testToken('shared-churner');
  });
  afterAll(async () => {
    await Promise.all((proxies ?? []).map((p) => p.stop()));
    await backend?.stop();
    await redis?.stop();
  });

  it('both proxies together admit about what one would: the user, not the proxy, is limited', async () => {
    let before = 0;
    await underAttack(proxies[0]!, async () => {
      before = (await opened(proxies[0]!.adminPort)) + (await opened(proxies[1]!.adminPort));
      await churn(proxies.map((p) => p.port), token, 20, 25);
    });
    const admitted = (await opened(proxies[0]!.adminPort)) + (await opened(proxies[1]!.adminPort)) - before;
    // Unshared, two proxies would admit twice (2 × (BURST + RATE × SECONDS) = 200).
    expect(admitted).toBeLessThanOrEqual(RATE * (SECONDS + 1) + 2 * BURST);
    expect(admitted).toBeGreaterThanOrEqual(RATE);
  }, 60_000);
});
