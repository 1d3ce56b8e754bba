import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FrameType } from '../../src/protocol/constants.js';
import { encodeFrame } from '../../src/protocol/encoder.js';
import { encodeHello } from '../../src/protocol/messages.js';
import { underAttack } from '../helpers/hostile.js';
import { metricValue } from '../helpers/metrics.js';
import { RawClient } from '../helpers/raw-client.js';
import { type EchoStack, startEchoStack, testToken } from '../helpers/processes.js';

/**
 * Issue 8, row 5 and the connection limits: global, per client address and per user, each refused with
 * its own code and counted by the limit's config path.
 */

/** Connects from `from`, sends HELLO with `token`, resolves with 'WELCOME' or the ERROR code. */
async function attempt(port: number, token: string, from = '127.0.0.1'): Promise<{ outcome: string; client: RawClient }> {
  const client = await RawClient.connect(port, '127.0.0.1', from);
  client.send(encodeFrame(FrameType.HELLO, 0, 0, encodeHello({ versions: [1], token })));
  const first = await Promise.race([client.next(FrameType.WELCOME, undefined, 10_000), client.next(FrameType.ERROR, undefined, 10_000)]);
  return { outcome: first.type === FrameType.WELCOME ? 'WELCOME' : RawClient.codeOf(first), client };
}

describe('row 5: many connections from 4 source addresses with one token (default limits)', () => {
  let stack: EchoStack;
  beforeAll(async () => {
    stack = await startEchoStack();
  });
  afterAll(() => stack?.stop());

  it('2,000 connections of one user: connections.max_per_user (32) are welcomed, the rest get USER_LIMIT', async () => {
    const outcomes = new Map<string, number>();
    const clients: RawClient[] = [];
    let n = 0;
    const worker = async (): Promise<void> => {
      while (n < 2_000) {
        const from = `127.0.0.${1 + (n++ % 4)}`;
        const { outcome, client } = await attempt(stack.proxy.port, stack.token, from);
        outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
        clients.push(client);
      }
    };
    await underAttack(stack.proxy, () => Promise.all(Array.from({ length: 40 }, worker)));
    expect(Object.fromEntries(outcomes)).toEqual({ WELCOME: 32, USER_LIMIT: 2_000 - 32 });
    expect(await metricValue(stack.proxy.adminPort, 'livemux_limit_hits_total', 'limit="connections.max_per_user"')).toBe(2_000 - 32);
    for (const c of clients) c.destroy();
    // The slots come back with the connections.
    await Promise.all(clients.map((c) => c.closed));
    const again = await attempt(stack.proxy.port, stack.token);
    expect(again.outcome).toBe('WELCOME');
    again.client.destroy();
  }, 120_000);
});

describe('global and per-address limits (small limits)', () => {
  let stack: EchoStack;
  beforeAll(async () => {
    stack = await startEchoStack({ connections: { max: 25, max_per_address: 10 } });
  });
  afterAll(() => stack?.stop());

  it('over connections.max_per_address → ADDRESS_LIMIT at once; other addresses are not affected', async () => {
    const held: RawClient[] = [];
    const elsewhere = await underAttack(stack.proxy, async () => {
      for (let i = 0; i < 10; i++) held.push((await attempt(stack.proxy.port, await testToken(`a${i}`), '127.0.0.2')).client);
      const over = await RawClient.connect(stack.proxy.port, '127.0.0.1', '127.0.0.2');
      expect(await over.errorCode()).toBe('ADDRESS_LIMIT');
      return attempt(stack.proxy.port, await testToken('b'), '127.0.0.3');
    });
    expect(elsewhere.outcome).toBe('WELCOME');
    for (const c of [...held, elsewhere.client]) c.destroy();
    await Promise.all([...held, elsewhere.client].map((c) => c.closed));
    expect(await metricValue(stack.proxy.adminPort, 'livemux_limit_hits_total', 'limit="connections.max_per_address"')).toBe(1);
  });

  it('over connections.max → SERVER_FULL at once; a slot freed is a slot taken', async () => {
    const held: RawClient[] = [];
    // The canary's connection is the 25th: it keeps being served while newcomers are refused.
    await underAttack(stack.proxy, async () => {
      for (let i = 0; i < 24; i++) held.push((await attempt(stack.proxy.port, await testToken(`u${i}`), `127.0.1.${1 + (i % 5)}`)).client);
      const over = await RawClient.connect(stack.proxy.port, '127.0.0.1', '127.0.2.1');
      expect(await over.errorCode()).toBe('SERVER_FULL');
    });
    held.pop()!.destroy();
    // The proxy learns of the close asynchronously: retry until the freed slot is seen.
    let outcome = '';
    for (let i = 0; i < 50 && outcome !== 'WELCOME'; i++) {
      const r = await RawClient.connect(stack.proxy.port, '127.0.0.1', '127.0.2.1').then(async (c) => {
        c.send(encodeFrame(FrameType.HELLO, 0, 0, encodeHello({ versions: [1], token: stack.token })));
        const f = await Promise.race([c.next(FrameType.WELCOME), c.next(FrameType.ERROR)]);
        held.push(c);
        return f.type === FrameType.WELCOME ? 'WELCOME' : RawClient.codeOf(f);
      });
      outcome = r;
      if (outcome !== 'WELCOME') await new Promise((r) => setTimeout(r, 20));
    }
    expect(outcome).toBe('WELCOME');
    for (const c of held) c.destroy();
    expect(await metricValue(stack.proxy.adminPort, 'livemux_limit_hits_total', 'limit="connections.max"')).toBeGreaterThanOrEqual(1);
  });
});
