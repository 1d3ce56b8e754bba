import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FrameType, Priority } from '../../src/protocol/constants.js';
import { encodeFrame } from '../../src/protocol/encoder.js';
import { encodeHello } from '../../src/protocol/messages.js';
import { MiB, underAttack } from '../helpers/hostile.js';
import { adminStatus, metricValue } from '../helpers/metrics.js';
import { RawClient } from '../helpers/raw-client.js';
import { until } from '../helpers/until.js';
import { type EchoStack, startEchoStack } from '../helpers/processes.js';

/**
 * Issue 8, row 3 and the handshake limits: before WELCOME the proxy holds almost nothing. A frame other
 * than HELLO is refused as soon as its header is read; HELLO and the frames pipelined behind it have
 * their own small bounds; all unauthenticated connections together share one byte budget, and the
 * number of connections in the handshake is capped (the oldest gives way to a newcomer).
 */

/** Stated bound of a well-behaved client's connect → WELCOME during the attack (it took 6.5 s before). */
const HANDSHAKE_BOUND_MS = 3_000;

const header = (type: number, flags: number, session: number, length: number): Buffer => {
  const b = Buffer.alloc(12);
  b[0] = 0x4c;
  b[1] = 1;
  b[2] = type;
  b[3] = flags;
  b.writeUInt32BE(session, 4);
  b.writeUInt32BE(length, 8);
  return b;
};

/** Connects, writes `bytes`, and resolves with the ERROR code the proxy answered, or 'closed' without one. */
async function refusedWith(port: number, bytes: Buffer[]): Promise<string> {
  const c = await RawClient.connect(port);
  for (const b of bytes) c.write(b);
  try {
    return await c.errorCode(10_000);
  } catch {
    c.destroy();
    return 'no ERROR';
  } finally {
    c.destroy();
  }
}

/** Time from connect to WELCOME of a fresh, well-behaved client. */
/** How long a well-behaved client's handshake takes; it connects from an address of its own, not the attacker's. */
async function handshakeMs(port: number, token: string): Promise<number> {
  const started = performance.now();
  const c = await RawClient.handshake(port, token, {}, '127.0.0.2');
  const ms = performance.now() - started;
  c.destroy();
  return ms;
}

describe('row 3: connections that never send HELLO (default limits)', () => {
  let stack: EchoStack;
  beforeAll(async () => {
    stack = await startEchoStack();
  });
  afterAll(() => stack?.stop());

  it('2,000 connections each sending a DATA header and its whole payload (1 MiB, or max_payload): each refused at its header', async () => {
    // Half as the row measured (1 MiB); half at the default max_payload (128 KiB since issue 9), which
    // only the state can refuse: both were buffered whole before.
    const sizes = [MiB, 128 * 1024];
    const payloads = sizes.map((n) => Buffer.alloc(n - 1, 0x61));
    const codes = sizes.map(() => new Map<string, number>());
    const handshakes: number[] = [];
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < 2_000) {
        const i = next++ % 2;
        const code = await refusedWith(stack.proxy.port, [header(FrameType.DATA, Priority.HIGH, 1, sizes[i]!), payloads[i]!]);
        codes[i]!.set(code, (codes[i]!.get(code) ?? 0) + 1);
      }
    };
    const reconnecting = async (): Promise<void> => {
      while (next < 2_000) {
        handshakes.push(await handshakeMs(stack.proxy.port, stack.token));
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    // Each attacker's first read is a full 64 KiB socket chunk, garbage once its header is refused: up to
    // 2,000 × 64 KiB = 125 MiB await the collector on top of the ~85 MiB idle process, depending on how
    // fast the attack runs (a quiet machine runs it fastest). Before, the payloads were held: 1.9 GB.
    await underAttack(stack.proxy, () => Promise.all([...Array.from({ length: 50 }, worker), reconnecting()]), { rssBound: 300 * MiB });
    // A 1 MiB length is past max_payload: the header is refused for its length before its type is
    // weighed against the state (§2.5); a 128 KiB one for its type. Either way before a byte of payload.
    // Refused connections linger a moment, counted against their address: when the attack runs fast,
    // some of its connections are refused at accept instead (ADDRESS_LIMIT), before any header.
    const [large, small] = codes.map((c) => Object.fromEntries(c)) as [Record<string, number>, Record<string, number>];
    expect(Object.keys(large).filter((c) => c !== 'ADDRESS_LIMIT')).toEqual(['FRAME_TOO_LARGE']);
    expect(Object.keys(small).filter((c) => c !== 'ADDRESS_LIMIT')).toEqual(['UNEXPECTED_FRAME']);
    expect(large.FRAME_TOO_LARGE! + (large.ADDRESS_LIMIT ?? 0)).toBe(1_000);
    expect(small.UNEXPECTED_FRAME! + (small.ADDRESS_LIMIT ?? 0)).toBe(1_000);
    expect(Math.max(...handshakes)).toBeLessThan(HANDSHAKE_BOUND_MS);
    // The next tests connect from the same address and expect one code each: a refused socket still
    // lingering from the attack counts against connections.max_per_address (on a busy machine they
    // pile up, and a test got ADDRESS_LIMIT instead of its code). Wait until the proxy holds none.
    await until(async () => (await adminStatus<{ sockets: number }>(stack.proxy.adminPort)).sockets === 0, "the attack's sockets gone", 60_000);
  }, 180_000);

  it('a DATA header within max_payload before HELLO is refused at its header too, by state: UNEXPECTED_FRAME', async () => {
    expect(await refusedWith(stack.proxy.port, [header(FrameType.DATA, Priority.HIGH, 1, 65_536)])).toBe('UNEXPECTED_FRAME');
  });

  it('a HELLO longer than limits.max_hello_bytes is refused at its header, before a byte of it is read', async () => {
    expect(await refusedWith(stack.proxy.port, [header(FrameType.HELLO, 0, 0, 8193)])).toBe('FRAME_TOO_LARGE');
  });

  it('a frame pipelined behind HELLO over limits.handshake_bytes is refused at its header', async () => {
    const hello = encodeFrame(FrameType.HELLO, 0, 0, encodeHello({ versions: [1], token: stack.token }));
    expect(await refusedWith(stack.proxy.port, [Buffer.concat([hello, header(FrameType.DATA, Priority.HIGH, 1, 65536)])])).toBe('FRAME_TOO_LARGE');
  });

  it('small frames pipelined behind HELLO are still held and answered after WELCOME', async () => {
    const c = await RawClient.connect(stack.proxy.port);
    c.send(encodeFrame(FrameType.HELLO, 0, 0, encodeHello({ versions: [1], token: stack.token })));
    c.open(1);
    c.data(1, 'pipelined');
    await c.next(FrameType.WELCOME);
    await c.next(FrameType.OPEN_OK, 1);
    expect((await c.next(FrameType.DATA, 1)).payload.toString()).toBe('pipelined');
    c.destroy();
  });
});

describe('handshake caps (small limits)', () => {
  let stack: EchoStack;
  beforeAll(async () => {
    stack = await startEchoStack({
      connections: { max_handshakes: 20, handshake_budget_bytes: 64 * 1024 },
      limits: { max_hello_bytes: 8192 },
    });
  });
  afterAll(() => stack?.stop());

  it('over connections.max_handshakes, the connection longest in the handshake gives way with SERVER_FULL', async () => {
    const idle: RawClient[] = [];
    await underAttack(stack.proxy, async () => {
      for (let i = 0; i < 20; i++) {
        idle.push(await RawClient.connect(stack.proxy.port));
        // Accept order is the proxy's order: let each one be accepted before the next.
        await new Promise((r) => setTimeout(r, 5));
      }
      const started = performance.now();
      const newcomer = await RawClient.handshake(stack.proxy.port, stack.token);
      expect(performance.now() - started).toBeLessThan(2_000);
      expect(await idle[0]!.errorCode()).toBe('SERVER_FULL');
      newcomer.destroy();
    });
    for (const c of idle) c.destroy();
    expect(await metricValue(stack.proxy.adminPort, 'livemux_limit_hits_total', 'limit="connections.max_handshakes"')).toBeGreaterThanOrEqual(1);
  });

  it('bytes held for unauthenticated connections share connections.handshake_budget_bytes: over it → SERVER_FULL', async () => {
    // Each sends most of a HELLO and waits: 7 KiB held per connection, 64 KiB for all of them.
    const partial = Buffer.concat([header(FrameType.HELLO, 0, 0, 8000), Buffer.alloc(7000, 0x0a)]);
    const clients = await Promise.all(Array.from({ length: 12 }, () => RawClient.connect(stack.proxy.port)));
    const refused = await underAttack(stack.proxy, () => {
      for (const c of clients) c.write(partial);
      return Promise.all(clients.map((c) => c.errorCode(3_000).catch(() => null)));
    });
    expect(refused.filter((code) => code === 'SERVER_FULL').length).toBeGreaterThanOrEqual(12 - 9);
    for (const c of clients) c.destroy();
    expect(await metricValue(stack.proxy.adminPort, 'livemux_limit_hits_total', 'limit="connections.handshake_budget_bytes"')).toBeGreaterThanOrEqual(1);
    // The budget is released with the connections: a newcomer gets in.
    (await RawClient.handshake(stack.proxy.port, stack.token)).destroy();
  });
});
