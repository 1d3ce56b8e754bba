import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import protobuf from 'protobufjs';
import { describe, expect, it } from 'vitest';
import { ApiErrors } from '../../src/backends/push/api-errors.js';
import { collapse } from '../../src/backends/push/device-sessions.js';
import { Audience, decodePushEvent, decodePushRequest, encodePushEvent, encodePushRequest, type PushEvent, type PushRequest } from '../../src/backends/push/push-codec.js';
import type { PushRecord } from '../../src/backends/push/store.js';
import { FrameType, Priority } from '../../src/protocol/constants.js';
import { encodeFrame } from '../../src/protocol/encoder.js';
import { protoPath } from '../../src/paths.js';

const DOC = readFileSync(join(import.meta.dirname, '..', '..', 'docs', 'push.md'), 'utf8');

/** The vectors of docs/push.md §2.6: each encodes to its hex, and the doc shows that hex. */
const EVENTS: [string, PushEvent][] = [
  [
    '0a300a04702d3432120568656c6c6f1801220573636f72652880d0eab6b7333080adc6b8b73338014208636c6173733a3432',
    { push: { id: 'p-42', data: Buffer.from('hello'), priority: 1, collapseKey: 'score', sentAtMs: 1767225600000, expiresAtMs: 1767229200000, audience: Audience.TOPIC, topic: 'class:42' } },
  ],
  ['1217080710012a07636974793a626a2a08636c6173733a3432', { reply: { requestId: 7, ok: true, errorCode: '', errorMessage: '', topics: ['city:bj', 'class:42'] } }],
  ['1a1508021207636974793a626a1208636c6173733a3432', { synced: { backlog: 2, topics: ['city:bj', 'class:42'] } }],
];
const REQUESTS: [string, PushRequest][] = [
  ['12060a04702d3432', { requestId: 0, ack: { ids: ['p-42'] } }],
  ['08071a130a08636c6173733a34320a07636974793a626a', { requestId: 7, subscribe: { topics: ['class:42', 'city:bj'] } }],
];

describe('push codec', () => {
  it.each(EVENTS)('encodes and decodes the event %s as docs/push.md shows', (hex, event) => {
    expect(encodePushEvent(event).toString('hex')).toBe(hex);
    expect(decodePushEvent(Buffer.from(hex, 'hex'))).toMatchObject(event);
    expect(DOC).toContain(hex);
  });

  it.each(REQUESTS)('encodes and decodes the request %s as docs/push.md shows', (hex, request) => {
    expect(encodePushRequest(request).toString('hex')).toBe(hex);
    expect(decodePushRequest(Buffer.from(hex, 'hex'))).toMatchObject(request);
    expect(DOC).toContain(hex);
  });

  it('frames the push vector as docs/push.md shows, header spaced', () => {
    const frame = encodeFrame(FrameType.DATA, Priority.HIGH, 1, Buffer.from(EVENTS[0]![0], 'hex')).toString('hex');
    const spaced = [frame.slice(0, 2), frame.slice(2, 4), frame.slice(4, 6), frame.slice(6, 8), frame.slice(8, 16), frame.slice(16, 24), frame.slice(24)].join(' ');
    expect(DOC).toContain(spaced);
  });

  it('refuses bytes that are not a message', () => {
    expect(() => decodePushRequest(Buffer.from([0xff]))).toThrow();
    expect(() => decodePushEvent(Buffer.from([0x0a, 0x05, 0x01]))).toThrow();
  });
});

describe('docs/push.md', () => {
  it('lists every API error of the registry with its status, in registry order', () => {
    const table = DOC.slice(DOC.indexOf('<!-- api-errors:begin -->'), DOC.indexOf('<!-- api-errors:end -->'));
    const rows = Object.entries(ApiErrors).map(([code, e]) => `| \`${code}\` | ${e.status} | ${e.retry ? 'yes' : 'no'} | ${e.meaning} |`);
    expect(table.split('\n').filter((l) => l.startsWith('| `'))).toEqual(rows);
  });
});

describe('collapse', () => {
  const r = (id: string, topic: string, collapseKey: string): PushRecord => ({
    id,
    keyName: 'k',
    fingerprint: '',
    audience: 'topic',
    topic,
    priority: Priority.HIGH,
    collapseKey,
    data: Buffer.alloc(0),
    sentAtMs: 0,
    ttlS: 60,
    expiresAtMs: 60_000,
    targeted: 1,
  });

  it('keeps the newest of each topic and key, and every push without a key, in order', () => {
    const owed = [r('1', 'a', 'score'), r('2', 'a', ''), r('3', 'b', 'score'), r('4', 'a', 'score'), r('5', 'a', '')];
    expect(collapse(owed)).toEqual({ send: [owed[1], owed[2], owed[3], owed[4]], replaced: ['1'] });
  });
});

describe('the hand-written PushEvent{push} encoder', () => {
  it('writes exactly what protobufjs writes for any push', () => {
    const type = protobuf.loadSync(protoPath('livemux/push/v1/push.proto')).lookupType('livemux.push.v1.PushEvent');
    const text = fc.string({ unit: 'grapheme', maxLength: 130 });
    const uint = fc.oneof(fc.integer({ min: 0, max: 300 }), fc.maxSafeNat());
    fc.assert(
      fc.property(
        fc.record({
          id: text,
          data: fc.uint8Array({ maxLength: 300 }),
          priority: fc.integer({ min: 0, max: 2 }),
          collapseKey: text,
          sentAtMs: uint,
          expiresAtMs: uint,
          audience: fc.constantFrom(Audience.USERS, Audience.TOPIC, Audience.ALL),
          topic: text,
        }),
        (push) => {
          const ours = encodePushEvent({ push });
          expect(ours.toString('hex')).toBe(Buffer.from(type.encode({ push } as unknown as protobuf.Message).finish()).toString('hex'));
          expect(decodePushEvent(ours)).toEqual({ push: { ...push, data: push.data.length === 0 ? Buffer.alloc(0) : Buffer.from(push.data) } });
        },
      ),
      { numRuns: 500 },
    );
  });
});
