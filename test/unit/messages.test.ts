import { readFileSync } from 'node:fs';
import protobuf from 'protobufjs';
import { describe, it, expect } from 'vitest';
import * as m from '../../src/protocol/messages.js';
import { FrameType } from '../../src/protocol/constants.js';
import { encodeData, encodeFrame, encodeWindowUpdate } from '../../src/protocol/encoder.js';
import { Code } from '../../src/protocol/codes.js';
import { ProtocolError } from '../../src/protocol/errors.js';
import { PACKAGE_ROOT, protoPath } from '../../src/paths.js';

describe('body round trips', () => {
  it('Hello with every field', () => {
    const hello: m.Hello = {
      versions: [1, 2],
      token: 'eyJhbGciOiJIUzI1NiJ9.e30.sig',
      client: { sdk: 'livemux-swift', sdkVersion: '2.0.1', platform: 'ios 17', appVersion: '5.3', deviceId: 'd-1' },
      sessionWindow: 65_536,
      connectionWindow: 2 ** 31 - 1,
      acceptsBatch: true,
    };
    expect(m.decodeHello(m.encodeHello(hello))).toEqual(hello);
  });

  it('Hello without client info leaves it undefined and windows 0 (= defaults)', () => {
    const decoded = m.decodeHello(m.encodeHello({ versions: [1], token: 't' }));
    expect(decoded).toEqual({ versions: [1], token: 't', sessionWindow: 0, connectionWindow: 0, acceptsBatch: false });
    expect('client' in decoded).toBe(false);
  });

  it('Welcome', () => {
    const welcome: m.Welcome = {
      version: 1,
      connectionId: 'c-1',
      userId: 'u-1',
      heartbeatIntervalMs: 25_000,
      limits: {
        maxSessions: 64,
        maxPayload: 1_048_576,
        sessionWindow: 262_144,
        connectionWindow: 1_048_576,
        idleTimeoutMs: 0,
        maxOpenRate: 100,
      },
    };
    expect(m.decodeWelcome(m.encodeWelcome(welcome))).toEqual(welcome);
  });

  it('Welcome without limits is malformed', () => {
    const body = m.encodeWelcome({ version: 1 } as m.Welcome);
    expect(() => m.decodeWelcome(body)).toThrow(ProtocolError);
    expect(() => m.decodeWelcome(body)).toThrow('WELCOME: body lacks limits');
  });

  it('Open with several metadata entries, and with none', () => {
    const open: m.Open = { business: 'chat', metadata: { room_id: 'r-1', lang: 'zh' } };
    expect(m.decodeOpen(m.encodeOpen(open))).toEqual(open);
    expect(m.decodeOpen(m.encodeOpen({ business: 'push', metadata: {} }))).toEqual({ business: 'push', metadata: {} });
  });

  it('Status with a retry hint, and the all-default Status as an empty body', () => {
    const status: m.Status = { code: Code.BACKEND_UNAVAILABLE, reason: 'no healthy backend', retryAfterMs: 1500 };
    expect(m.decodeStatus('OPEN_FAIL', m.encodeStatus(status))).toEqual(status);
    expect(m.encodeStatus({ code: Code.NORMAL, reason: '' })).toHaveLength(0);
    expect(m.decodeStatus('CLOSE', Buffer.alloc(0))).toEqual({ code: 0, reason: '', retryAfterMs: 0 });
  });

  it('GoAway with and without a reconnect address', () => {
    const goAway: m.GoAway = { lastSessionId: 2 ** 32 - 1, code: Code.GOING_AWAY, reason: 'deploy', reconnectAddress: 'h:1' };
    expect(m.decodeGoAway(m.encodeGoAway(goAway))).toEqual(goAway);
    const plain = { lastSessionId: 0, code: Code.IDLE_TIMEOUT, reason: '' };
    expect(m.decodeGoAway(m.encodeGoAway(plain))).toEqual({ ...plain, reconnectAddress: '' });
  });

  it('names the frame in a malformed Status error', () => {
    expect(() => m.decodeStatus('RESET', Buffer.from('0a', 'hex'))).toThrow(/^RESET: body is not a valid Status/);
  });
});

interface ValidVector {
  name: string;
  hex: string;
  type: keyof typeof FrameType;
  flags: number;
  sessionId: number;
  body: Record<string, unknown>;
  nonCanonical?: boolean;
}

/** Encodes a fixture vector from its decoded fields alone, the way the fixture was generated. */
function encodeVector(v: ValidVector): Buffer {
  const type = FrameType[v.type];
  // The fixture stores each body in the shape the encoders take, so it is passed through unchecked.
  const body = v.body as never;
  switch (type) {
    case FrameType.DATA:
      return encodeData(v.sessionId, v.flags, Buffer.from(v.body.payload as string, 'hex'));
    case FrameType.PING:
    case FrameType.PONG:
      return encodeFrame(type, v.flags, v.sessionId, Buffer.from(v.body.payload as string, 'hex'));
    case FrameType.WINDOW_UPDATE:
      return encodeWindowUpdate(v.sessionId, v.body.increment as number);
    case FrameType.HELLO:
      return encodeFrame(type, v.flags, v.sessionId, m.encodeHello(body));
    case FrameType.WELCOME:
      return encodeFrame(type, v.flags, v.sessionId, m.encodeWelcome(body));
    case FrameType.OPEN:
      return encodeFrame(type, v.flags, v.sessionId, m.encodeOpen(body));
    case FrameType.OPEN_OK:
      return encodeFrame(type, v.flags, v.sessionId);
    case FrameType.GOAWAY:
      return encodeFrame(type, v.flags, v.sessionId, m.encodeGoAway(body));
    default:
      return encodeFrame(type, v.flags, v.sessionId, m.encodeStatus(body));
  }
}

describe('test/fixtures/protocol-vectors.json', () => {
  const fixture = JSON.parse(readFileSync(`${PACKAGE_ROOT}/test/fixtures/protocol-vectors.json`, 'utf8')) as {
    valid: ValidVector[];
  };

  // A non-canonical vector shows how odd bytes are read; no encoder writes them.
  it.each(fixture.valid.filter((v) => v.nonCanonical !== true).map((v) => [v.name, v] as const))('%s: the encoders regenerate its bytes', (_, v) => {
    expect(encodeVector(v).toString('hex')).toBe(v.hex);
  });
});

describe('PROTOCOL.md §4', () => {
  const doc = readFileSync(`${PACKAGE_ROOT}/PROTOCOL.md`, 'utf8');
  const section = doc.slice(doc.indexOf('## §4 Bodies'), doc.indexOf('## §5 State machines'));
  // keepCase: the document uses the .proto field names, which SDK code generators see.
  const root = new protobuf.Root().loadSync(protoPath('livemux/v1/wire.proto'), { keepCase: true });
  const wire = root.lookup('livemux.v1') as protobuf.Namespace;
  const messageTypes = wire.nestedArray.filter((t): t is protobuf.Type => t instanceof protobuf.Type);

  function typeName(field: protobuf.Field): string {
    if (field instanceof protobuf.MapField) return `map<${field.keyType}, ${field.type}>`;
    return field.repeated ? `repeated ${field.type}` : field.type;
  }

  /** `#`, name and type of each row of the table under the message's heading. */
  function documentedFields(message: string): string[][] {
    const start = section.search(new RegExp(`^### §4\\.\\d+ \`${message}\`$`, 'm'));
    expect(start, `heading for ${message}`).toBeGreaterThanOrEqual(0);
    const next = section.indexOf('\n### ', start + 1);
    const body = section.slice(start, next < 0 ? undefined : next);
    return body
      .split('\n')
      .filter((line) => /^\| \d+ \|/.test(line))
      .map((line) => line.split('|').slice(1, 4).map((cell) => cell.trim()));
  }

  it('covers every message of wire.proto', () => {
    expect(messageTypes.map((t) => t.name).sort()).toEqual(
      ['ClientInfo', 'GoAway', 'Hello', 'Limits', 'Open', 'OpenOk', 'Status', 'Welcome'],
    );
  });

  it.each(messageTypes.map((t) => [t.name, t] as const))('lists every field of %s with its number and type', (_, t) => {
    expect(documentedFields(t.name)).toEqual(t.fieldsArray.map((f) => [String(f.id), f.name, typeName(f)]));
  });
});
