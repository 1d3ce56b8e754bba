/**
 * PROTOCOL.md taken at its word, over raw sockets: each test is a place where an independent client,
 * written from the text alone, once disagreed with the server (issue 9).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FrameType } from '../../src/protocol/constants.js';
import { encodeFrame } from '../../src/protocol/encoder.js';
import { encodeHello, encodeOpen, encodeStatus } from '../../src/protocol/messages.js';
import { RawClient } from '../helpers/raw-client.js';
import { type EchoStack, startEchoStack } from '../helpers/processes.js';

let stack: EchoStack;

beforeAll(async () => {
  stack = await startEchoStack();
});

afterAll(() => stack?.stop());

const hello = (fields: Record<string, unknown> = {}): Buffer =>
  encodeFrame(FrameType.HELLO, 0, 0, encodeHello({ versions: [1], token: stack.token, ...fields }));
const open = (id: number, business = 'echo'): Buffer => encodeFrame(FrameType.OPEN, 0, id, encodeOpen({ business, metadata: {} }));
const data = (id: number, text: string, flags = 1): Buffer => encodeFrame(FrameType.DATA, flags, id, Buffer.from(text));
const error = (code: number): Buffer => encodeFrame(FrameType.ERROR, 0, 0, encodeStatus({ code, reason: 'client gives up' }));

/** Names of every frame the client received, in order, once the server has closed the connection. */
async function framesUntilClosed(c: RawClient): Promise<string[]> {
  await c.closed;
  return c.received.map((f) => (f.type === FrameType.ERROR ? `ERROR ${RawClient.codeOf(f)}` : f.name));
}

describe('§4.1 HELLO is checked in order: versions, windows, token', () => {
  const cases: [string, () => Buffer, string][] = [
    ['an empty versions list', () => hello({ versions: [] }), 'UNSUPPORTED_VERSION'],
    ['no supported version and a window too large', () => hello({ versions: [9], sessionWindow: 0x8000_0000 }), 'UNSUPPORTED_VERSION'],
    ['a window too large and a bad token', () => hello({ token: 'bad', connectionWindow: 0xffff_ffff }), 'FLOW_CONTROL_ERROR'],
  ];
  for (const [name, frame, code] of cases) {
    it(`${name} → ERROR ${code}`, async () => {
      const c = await RawClient.connect(stack.proxy.port);
      c.send(frame());
      expect(await framesUntilClosed(c)).toEqual([`ERROR ${code}`]);
    });
  }
});

describe('§4.1 HELLO windows above 2^31-1', () => {
  for (const field of ['sessionWindow', 'connectionWindow']) {
    it(`${field} 2^31 → ERROR FLOW_CONTROL_ERROR, no WELCOME`, async () => {
      const c = await RawClient.connect(stack.proxy.port);
      c.send(hello({ [field]: 0x8000_0000 }));
      expect(await framesUntilClosed(c)).toEqual(['ERROR FLOW_CONTROL_ERROR']);
    });
  }

  it('2^31-1 itself is accepted', async () => {
    const c = await RawClient.handshake(stack.proxy.port, stack.token, { sessionWindow: 0x7fff_ffff, connectionWindow: 0x7fff_ffff });
    c.destroy();
  });
});

describe('§2.3 BATCH is server-only', () => {
  for (const flags of [0x04, 0x05, 0x06]) {
    it(`client DATA with flags 0x0${flags} → ERROR BAD_FLAGS`, async () => {
      const c = await RawClient.handshake(stack.proxy.port, stack.token);
      c.send(open(1));
      await c.next(FrameType.OPEN_OK, 1);
      c.send(data(1, '\x00\x00\x00\x02hi', flags));
      expect(await c.errorCode()).toBe('BAD_FLAGS');
      expect(c.received.filter((f) => f.type === FrameType.DATA)).toEqual([]);
    });
  }
});

describe('§5.1 frames held behind HELLO are answered after WELCOME', () => {
  const cases: [string, () => Buffer][] = [
    ['a second HELLO', () => hello()],
    ['WELCOME from the client', () => encodeFrame(FrameType.WELCOME, 0, 0, Buffer.alloc(0))],
    ['OPEN_OK from the client', () => encodeFrame(FrameType.OPEN_OK, 0, 1, Buffer.alloc(0))],
    ['GOAWAY from the client', () => encodeFrame(FrameType.GOAWAY, 0, 0, Buffer.alloc(0))],
  ];
  for (const [name, frame] of cases) {
    it(`HELLO + ${name} in one write → WELCOME, then ERROR UNEXPECTED_FRAME`, async () => {
      const c = await RawClient.connect(stack.proxy.port);
      c.send(Buffer.concat([hello(), frame()]));
      expect(await framesUntilClosed(c)).toEqual(['WELCOME', 'ERROR UNEXPECTED_FRAME']);
    });
  }

  it('held frames before the failing one are processed; WELCOME comes first, ERROR last', async () => {
    const c = await RawClient.connect(stack.proxy.port);
    c.send(Buffer.concat([hello(), open(1), hello()]));
    const frames = await framesUntilClosed(c);
    expect(frames[0]).toBe('WELCOME');
    expect(frames.at(-1)).toBe('ERROR UNEXPECTED_FRAME');
    // ERROR is the last frame; what was queued but not yet written may be discarded (§3.13).
    expect(['WELCOME,ERROR UNEXPECTED_FRAME', 'WELCOME,OPEN_OK,ERROR UNEXPECTED_FRAME']).toContain(frames.join());
  });
});


describe('§3.13 an ERROR is never answered, in any state', () => {
  it('before HELLO: the server closes without a frame', async () => {
    const c = await RawClient.connect(stack.proxy.port);
    c.send(error(100));
    expect(await framesUntilClosed(c)).toEqual([]);
  });

  it('held behind HELLO: the server closes at once, without WELCOME', async () => {
    const c = await RawClient.connect(stack.proxy.port);
    c.send(Buffer.concat([hello(), error(406)]));
    expect(await framesUntilClosed(c)).toEqual([]);
  });

  it('after WELCOME: the server closes without a frame', async () => {
    const c = await RawClient.handshake(stack.proxy.port, stack.token);
    c.send(error(406));
    expect(await framesUntilClosed(c)).toEqual(['WELCOME']);
  });
});

describe('§5.1 the state check comes before the body', () => {
  const garbage = Buffer.from([0xff, 0xff, 0xff]);
  it('OPEN with an undecodable body before HELLO → UNEXPECTED_FRAME, not MALFORMED_PAYLOAD', async () => {
    const c = await RawClient.connect(stack.proxy.port);
    c.send(encodeFrame(FrameType.OPEN, 0, 1, garbage));
    expect(await c.errorCode()).toBe('UNEXPECTED_FRAME');
  });

  for (const type of [FrameType.HELLO, FrameType.WELCOME, FrameType.GOAWAY]) {
    it(`${type === FrameType.HELLO ? 'a second HELLO' : `frame type ${type} from the client`} with an undecodable body → UNEXPECTED_FRAME`, async () => {
      const c = await RawClient.handshake(stack.proxy.port, stack.token);
      c.send(encodeFrame(type, 0, 0, garbage));
      expect(await c.errorCode()).toBe('UNEXPECTED_FRAME');
    });
  }
});

describe('§4 bodies are read as the protobuf reference implementations read them', () => {
  it('a field with the wrong wire type is skipped: OPEN still opens', async () => {
    const c = await RawClient.handshake(stack.proxy.port, stack.token);
    // field 1 as a varint (skipped), then business "echo"
    c.send(encodeFrame(FrameType.OPEN, 0, 1, Buffer.from('08050a046563686f', 'hex')));
    await c.next(FrameType.OPEN_OK, 1);
    c.destroy();
  });

  it('a token that is not UTF-8 → ERROR MALFORMED_PAYLOAD', async () => {
    const c = await RawClient.connect(stack.proxy.port);
    c.send(encodeFrame(FrameType.HELLO, 0, 0, Buffer.from('0a01011202c328', 'hex')));
    expect(await c.errorCode()).toBe('MALFORMED_PAYLOAD');
  });
});
