import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FrameType } from '../../src/protocol/constants.js';
import { encodeFrame } from '../../src/protocol/encoder.js';
import { encodeStatus } from '../../src/protocol/messages.js';
import { underAttack } from '../helpers/hostile.js';
import { metricValue, scrape } from '../helpers/metrics.js';
import { RawClient } from '../helpers/raw-client.js';
import { type EchoStack, startEchoStack } from '../helpers/processes.js';

/**
 * Issue 8, row 4: nothing a client sends becomes a metric label. Business names the routes do not know
 * are one label value, `(unknown)`; codes a client sends that are not in the registry are one label
 * value, `UNKNOWN`. And `livemux_backend_messages_total` counts what the backend streams carry.
 */

let stack: EchoStack;

beforeAll(async () => {
  // OPENs are paced by the per-connection OPEN/RESET rate; this test opens 200 on one connection.
  stack = await startEchoStack({ limits: { open_reset_rate: 1_000 } });
});

afterAll(() => stack?.stop());

describe('bounded metrics', () => {
  it('row 4: 200 OPENs with random 16 KB business names and 2,000 ERRORs with distinct codes add a handful of series', async () => {
    // The canary's own series (an echo session opened, a connection closed) exist before the count starts.
    await underAttack(stack.proxy, async () => {});
    const before = (await scrape(stack.proxy.adminPort)).length;
    await underAttack(stack.proxy, async () => {
      const c = await RawClient.handshake(stack.proxy.port, stack.token);
      for (let id = 1; id <= 200; id++) c.open(id, randomBytes(8_000).toString('hex'));
      for (let id = 1; id <= 200; id++) expect(RawClient.codeOf(await c.next(FrameType.OPEN_FAIL, id))).toBe('UNKNOWN_BUSINESS');
      c.destroy();
      let n = 0;
      const worker = async (): Promise<void> => {
        while (n < 2_000) {
          const code = 1_000 + n++;
          const e = await RawClient.handshake(stack.proxy.port, stack.token);
          e.send(encodeFrame(FrameType.ERROR, 0, 0, encodeStatus({ code, reason: randomBytes(50).toString('hex') })));
          await e.closed;
        }
      };
      await Promise.all(Array.from({ length: 20 }, worker));
    });
    const text = await scrape(stack.proxy.adminPort);
    expect(text.length - before).toBeLessThan(4_096);
    expect(text).toContain('livemux_sessions_opened_total{business="(unknown)",result="UNKNOWN_BUSINESS"} 200');
    expect(text).toMatch(/livemux_connections_closed_total\{code="UNKNOWN"\} 2000\b/);
  }, 120_000);

  it('livemux_backend_messages_total counts events to and messages from each backend endpoint', async () => {
    const endpoint = `127.0.0.1:${stack.backend.port}`;
    const out0 = await metricValue(stack.proxy.adminPort, 'livemux_backend_messages_total', `endpoint="${endpoint}",direction="out"`);
    const in0 = await metricValue(stack.proxy.adminPort, 'livemux_backend_messages_total', `endpoint="${endpoint}",direction="in"`);
    const c = await RawClient.handshake(stack.proxy.port, stack.token);
    c.open(1);
    await c.next(FrameType.OPEN_OK, 1);
    for (let i = 0; i < 10; i++) {
      c.data(1, `m${i}`);
      await c.next(FrameType.DATA, 1);
    }
    c.destroy();
    // open + 10 DATA out (and a close once the proxy sees the socket end); 10 delivers in.
    expect(await metricValue(stack.proxy.adminPort, 'livemux_backend_messages_total', `endpoint="${endpoint}",direction="out"`)).toBeGreaterThanOrEqual(out0 + 11);
    expect(await metricValue(stack.proxy.adminPort, 'livemux_backend_messages_total', `endpoint="${endpoint}",direction="in"`)).toBeGreaterThanOrEqual(in0 + 10);
  });
});
