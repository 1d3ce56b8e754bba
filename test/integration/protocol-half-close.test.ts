/**
 * PROTOCOL.md §5.2 half-close, over raw sockets: CLOSE ends only its sender's direction, so what the
 * backend still sends after the client's CLOSE reaches the client, and the answering CLOSE carries the
 * backend's own code (issue 9: the reply to the last DATA was lost when DATA and CLOSE came together).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FrameType } from '../../src/protocol/constants.js';
import { encodeFrame } from '../../src/protocol/encoder.js';
import { decodeStatus, encodeHello, encodeOpen, encodeStatus } from '../../src/protocol/messages.js';
import { RawClient } from '../helpers/raw-client.js';
import { type EchoStack, type RunningProcess, startEchoStack, startProxy } from '../helpers/processes.js';

let stack: EchoStack;
const proxies: RunningProcess[] = [];

beforeAll(async () => {
  stack = await startEchoStack();
});

afterAll(async () => {
  await Promise.all(proxies.map((p) => p.stop()));
  await stack?.stop();
});

const hello = (): Buffer => encodeFrame(FrameType.HELLO, 0, 0, encodeHello({ versions: [1], token: stack.token }));
const open = (id: number): Buffer => encodeFrame(FrameType.OPEN, 0, id, encodeOpen({ business: 'echo', metadata: {} }));
const data = (id: number, text: string): Buffer => encodeFrame(FrameType.DATA, 1, id, Buffer.from(text));
const close = (id: number, code = 0, reason = ''): Buffer => encodeFrame(FrameType.CLOSE, 0, id, encodeStatus({ code, reason }));

describe('§5.2 CLOSE ends only its sender\'s direction', () => {
  it('DATA and CLOSE in one write: the reply to that DATA arrives, then CLOSE', async () => {
    for (let run = 0; run < 3; run++) {
      const c = await RawClient.handshake(stack.proxy.port, stack.token);
      c.send(open(1));
      await c.next(FrameType.OPEN_OK, 1);
      c.send(Buffer.concat([data(1, `last words ${run}`), close(1)]));
      expect((await c.next(FrameType.DATA, 1)).payload.toString()).toBe(`last words ${run}`);
      await c.next(FrameType.CLOSE, 1);
      expect(c.received.map((f) => f.name)).toEqual(['WELCOME', 'OPEN_OK', 'DATA', 'CLOSE']);
      c.destroy();
    }
  });

  it('OPEN, DATA and CLOSE before OPEN_OK: OPEN_OK, the reply, then CLOSE', async () => {
    const c = await RawClient.handshake(stack.proxy.port, stack.token);
    c.send(Buffer.concat([open(1), data(1, 'one'), data(1, 'two'), close(1)]));
    await c.next(FrameType.CLOSE, 1);
    expect(c.received.slice(1).map((f) => `${f.name} ${f.type === FrameType.DATA ? f.payload.toString() : ''}`.trim())).toEqual([
      'OPEN_OK',
      'DATA one',
      'DATA two',
      'CLOSE',
    ]);
    c.destroy();
  });

  it('HELLO, OPEN, DATA, CLOSE in one write: nothing is lost either', async () => {
    const c = await RawClient.connect(stack.proxy.port);
    c.send(Buffer.concat([hello(), open(1), data(1, 'pipelined'), close(1)]));
    expect((await c.next(FrameType.DATA, 1)).payload.toString()).toBe('pipelined');
    await c.next(FrameType.CLOSE, 1);
    c.destroy();
  });

  it('the id is retired once both CLOSEs crossed: later DATA → RESET UNKNOWN_SESSION', async () => {
    const c = await RawClient.handshake(stack.proxy.port, stack.token);
    c.send(Buffer.concat([open(1), close(1)]));
    await c.next(FrameType.CLOSE, 1);
    c.send(data(1, 'late'));
    expect(RawClient.codeOf(await c.next(FrameType.RESET, 1))).toBe('UNKNOWN_SESSION');
    c.destroy();
  });
});

describe('§5.2 the code of the answering CLOSE is the answering side\'s own', () => {
  it('a client CLOSE 205 is answered with the backend\'s code, 0', async () => {
    const c = await RawClient.handshake(stack.proxy.port, stack.token);
    c.send(Buffer.concat([open(1), close(1, 205, 'bye')]));
    const answer = decodeStatus('CLOSE', (await c.next(FrameType.CLOSE, 1)).payload);
    expect(answer.code).toBe(0);
    c.destroy();
  });

  it('a backend that ends its side with 205 after the client\'s CLOSE: the answer carries 205 and its reason', async () => {
    const c = await RawClient.handshake(stack.proxy.port, stack.token);
    c.send(Buffer.concat([open(1), data(1, '/close 205 room ended'), close(1)]));
    const answer = decodeStatus('CLOSE', (await c.next(FrameType.CLOSE, 1)).payload);
    expect(answer).toMatchObject({ code: 205, reason: 'room ended' });
    c.destroy();
  });
});

describe('§5.2 a half-closed session stays open for the server\'s direction', () => {
  let proxy: RunningProcess & { port: number };
  beforeAll(async () => {
    proxy = await startProxy({
      backends: [`127.0.0.1:${stack.backend.port}`],
      config: { limits: { max_sessions: 2 }, timeouts: { half_close_ms: 1_000 } },
    });
    proxies.push(proxy);
  });

  it('DATA published to it after the client\'s CLOSE arrives; a backend that never ends it gets HALF_CLOSE_TIMEOUT', async () => {
    const c = await RawClient.handshake(proxy.port, stack.token);
    c.send(Buffer.concat([open(1), data(1, '/sub t-half'), data(1, '/linger'), close(1)]));
    await c.next(FrameType.OPEN_OK, 1);
    const other = await RawClient.handshake(proxy.port, stack.token);
    other.send(Buffer.concat([open(1), data(1, '/pub t-half after your CLOSE')]));
    expect((await c.next(FrameType.DATA, 1)).payload.toString()).toBe('after your CLOSE');
    const answer = decodeStatus('CLOSE', (await c.next(FrameType.CLOSE, 1, 5_000)).payload);
    expect(answer.code).toBe(211);
    c.destroy();
    other.destroy();
  });

  it('counts towards max_sessions until both CLOSEs have crossed', async () => {
    const c = await RawClient.handshake(proxy.port, stack.token);
    c.send(Buffer.concat([open(1), data(1, '/linger'), close(1), open(2), open(3)]));
    await c.next(FrameType.OPEN_OK, 2);
    expect(RawClient.codeOf(await c.next(FrameType.OPEN_FAIL, 3))).toBe('TOO_MANY_SESSIONS');
    await c.next(FrameType.CLOSE, 1, 5_000);
    c.send(open(4));
    await c.next(FrameType.OPEN_OK, 4);
    c.destroy();
  });
});
