import { afterAll, beforeAll, expect, it } from 'vitest';
import { FrameType, Priority } from '../../src/protocol/constants.js';
import { MiB, Watch } from '../helpers/hostile.js';
import { metricValue } from '../helpers/metrics.js';
import { RawClient } from '../helpers/raw-client.js';
import { type EchoStack, startEchoStack, testToken } from '../helpers/processes.js';

/**
 * Overload protection (issue 8): with the process over its memory thresholds the proxy refuses new
 * connections with OVERLOADED and sheds the connections holding the most, instead of growing until it
 * dies; a light client stays connected and answered. The attack: subscribers that never read, on a
 * proxy whose per-connection bound is raised far above what the overload limit allows for all of them.
 */

const MEMORY_LIMIT = 220 * MiB;
const HUGE = 0x7fff_0000;

let stack: EchoStack;

beforeAll(async () => {
  stack = await startEchoStack({
    limits: { outbound_queue_bytes: 256 * MiB, max_payload: 65536, session_window: HUGE, connection_window: HUGE, low_priority_rate: 0 },
    // The proxy idles at ~85 MiB: refuse from 154 MiB, shed from 176 MiB.
    overload: { memory_limit_bytes: MEMORY_LIMIT, stop_accepting_at: 0.7, shed_at: 0.8, check_interval_ms: 100 },
  });
});

afterAll(() => stack?.stop());

const status = async (): Promise<{ overload: string }> => (await fetch(`http://127.0.0.1:${stack.proxy.adminPort}/status`)).json() as Promise<{ overload: string }>;

it('subscribers that never read push the proxy over its memory thresholds: they are shed with OVERLOADED, newcomers refused, the canary served', async () => {
  // Shedding keeps the process near its limit: well under what four 256 MiB queues would take.
  const watch = await Watch.start(stack.proxy, { rssBound: MEMORY_LIMIT + 100 * MiB });
  const sinks: RawClient[] = [];
  for (let i = 0; i < 4; i++) {
    const c = await RawClient.handshake(stack.proxy.port, await testToken(`sink-${i}`), { sessionWindow: HUGE, connectionWindow: HUGE });
    c.open(1);
    await c.next(FrameType.OPEN_OK, 1);
    c.data(1, '/sub flood');
    c.data(1, 'ready?');
    await c.next(FrameType.DATA, 1);
    c.pause();
    sinks.push(c);
  }
  const publisher = await RawClient.handshake(stack.proxy.port, await testToken('publisher'));
  publisher.open(1);
  await publisher.next(FrameType.OPEN_OK, 1);
  const text = 'z'.repeat(10_000);
  let refusedNewcomer = false;
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline && (await metricValue(stack.proxy.adminPort, 'livemux_limit_hits_total', 'limit="overload.shed_at"')) < 4) {
    for (let i = 0; i < 200; i++) publisher.data(1, `/pub flood ${text}`, Priority.HIGH);
    if (!refusedNewcomer && (await status()).overload !== 'normal') {
      const newcomer = await RawClient.connect(stack.proxy.port);
      refusedNewcomer = (await newcomer.errorCode().catch(() => '')) === 'OVERLOADED';
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  publisher.destroy();
  const codes = await Promise.all(
    sinks.map(async (c) => {
      c.resume();
      return c.errorCode(20_000).catch(() => 'no ERROR');
    }),
  );
  expect(codes).toEqual(['OVERLOADED', 'OVERLOADED', 'OVERLOADED', 'OVERLOADED']);
  expect(refusedNewcomer).toBe(true);
  await watch.check();
}, 120_000);
