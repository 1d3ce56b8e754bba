import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import protobuf from 'protobufjs';
import { describe, expect, it } from 'vitest';
import { ImErrorCode } from '../../src/backends/im/im-errors.js';
import { PACKAGE_ROOT, protoPath } from '../../src/paths.js';
import {
  decodeImEvent,
  decodeImRequest,
  decodeInboxPayload,
  encodeEntriesEvent,
  encodeImEvent,
  encodeImRequest,
  encodeInboxPayload,
  encodeMessageFields,
  encodeOkReply,
  requestKind,
  type Message,
} from '../../src/backends/im/im-codec.js';

const message: Message = {
  serverId: 'srv-1',
  sender: 'ann',
  recipient: 'bob',
  convSeq: 3,
  body: Buffer.from('hey'),
  sentAtMs: 1_700_000_000_000,
  clientMsgId: 'c-1',
  senderDevice: 'phone',
  recalled: false,
};

describe('IM codec', () => {
  it('encodes the docs/im.md test vectors', () => {
    expect(encodeImRequest({ requestId: 1, sync: { afterSeq: 5 } }).toString('hex')).toBe('0801120208' + '05');
    const send = encodeImRequest({ requestId: 2, send: { to: 'bob', body: Buffer.from('hi'), clientMsgId: 'c1' } });
    expect(send.toString('hex')).toBe('08021a0d0a03626f6212026869' + '1a026331');
    expect(encodeImRequest({ requestId: 0, ack: { inboxSeq: 300 } }).toString('hex')).toBe('220308ac02');
  });

  it('documents every vector and every error code in docs/im.md, and no other code', () => {
    const doc = readFileSync(join(PACKAGE_ROOT, 'docs', 'im.md'), 'utf8');
    const spaced = (b: Buffer): string => b.toString('hex').replace(/(..)(?!$)/g, '$1 ');
    expect(doc).toContain(`\`${spaced(encodeImRequest({ requestId: 1, sync: { afterSeq: 5 } }))}\``);
    expect(doc).toContain(`\`${spaced(encodeImRequest({ requestId: 2, send: { to: 'bob', body: Buffer.from('hi'), clientMsgId: 'c1' } }))}\``);
    expect(doc).toContain(`\`${spaced(encodeImRequest({ requestId: 0, ack: { inboxSeq: 300 } }))}\``);
    const body = encodeInboxPayload({ message: { serverId: 's1', sender: 'ann', recipient: 'bob', convSeq: 3, body: Buffer.from('hi'), sentAtMs: 1000, clientMsgId: 'c1', senderDevice: 'p', recalled: false } });
    expect(doc).toContain(`\`${spaced(encodeEntriesEvent([{ seq: 7, body }]))}\``);
    const section = doc.slice(doc.indexOf('## 10. Errors'), doc.indexOf('## 11.'));
    expect([...section.matchAll(/^\| `([A-Z_]+)` \|/gm)].map((m) => m[1])).toEqual(Object.values(ImErrorCode));
  });

  it('round-trips every request kind and names it', () => {
    const requests = [
      { requestId: 1, sync: { afterSeq: 5 } },
      { requestId: 2, send: { to: 'bob', body: Buffer.from([0, 1, 2]), clientMsgId: 'c' } },
      { requestId: 0, ack: { inboxSeq: 9 } },
      { requestId: 3, read: { peer: 'bob', convSeq: 4 } },
      { requestId: 4, recall: { peer: 'bob', convSeq: 4 } },
      { requestId: 0, typing: { to: 'bob' } },
      { requestId: 5, history: { peer: 'bob', beforeSeq: 0, limit: 20 } },
      { requestId: 6, watchPresence: { users: ['bob', 'cat'] } },
      { requestId: 7, block: { user: 'eve' } },
      { requestId: 8, unblock: { user: 'eve' } },
      { requestId: 9, listBlocked: { after: '' } },
    ];
    for (const r of requests) {
      const decoded = decodeImRequest(encodeImRequest(r));
      expect(decoded).toMatchObject(r);
      expect(requestKind(decoded)).toBe(Object.keys(r)[1]);
    }
    expect(requestKind(decodeImRequest(encodeImRequest({ requestId: 4 })))).toBeNull();
    expect(() => decodeImRequest(Buffer.from([0xff, 0xff]))).toThrow(expect.objectContaining({ code: 'BAD_REQUEST' }));
  });

  it('builds an Entries event from stored bodies without decoding them', () => {
    const bodies = [
      encodeInboxPayload({ message }),
      encodeInboxPayload({ read: { reader: 'bob', peer: 'ann', convSeq: 3, readAtMs: 5 } }),
      encodeInboxPayload({ recall: { serverId: 'srv-1', sender: 'ann', recipient: 'bob', convSeq: 3, recalledAtMs: 6 } }),
    ];
    const seqs = [1, 300, 2 ** 40];
    const bytes = encodeEntriesEvent(bodies.map((body, i) => ({ seq: seqs[i]!, body })));
    // The same bytes as protobufjs makes from the decoded items.
    const items = bodies.map((b, i) => ({ inboxSeq: seqs[i]!, ...decodeInboxPayload(b) }));
    expect(bytes.equals(encodeImEvent({ entries: { items } }))).toBe(true);
    const event = decodeImEvent(bytes);
    expect(event.entries!.items.map((i) => i.inboxSeq)).toEqual(seqs);
    expect(event.entries!.items[0]!.message).toEqual({ ...message, body: Buffer.from('hey') });
    expect(event.entries!.items[1]!.read).toEqual({ reader: 'bob', peer: 'ann', convSeq: 3, readAtMs: 5 });
    expect(event.entries!.items[2]!.recall?.recalledAtMs).toBe(6);
    expect(decodeImEvent(encodeEntriesEvent([])).entries).toEqual({ items: [] });
  });

  it('round-trips replies and events', () => {
    const events = [
      { reply: { requestId: 2, ok: true, errorCode: '', errorMessage: '', retryAfterMs: 0, sent: { serverId: 's', convSeq: 1, sentAtMs: 2, clientMsgId: 'c', duplicate: true } } },
      { reply: { requestId: 3, ok: false, errorCode: 'BLOCKED', errorMessage: 'no', retryAfterMs: 0 } },
      { synced: { lastSeq: 12, resumed: true } },
      { gap: { fromSeq: 1, toSeq: 4 } },
      { typing: { from: 'bob', atMs: 9 } },
      { presence: { user: 'bob', online: true, atMs: 10 } },
    ];
    for (const e of events) expect(decodeImEvent(encodeImEvent(e))).toEqual(e);
  });
});

describe('the hand-written Message fields encoder', () => {
  it('writes exactly what protobufjs writes for any message without conv_seq', () => {
    const type = protobuf.loadSync(protoPath('livemux/im/v1/im.proto')).lookupType('livemux.im.v1.Message');
    const text = fc.string({ unit: 'grapheme', maxLength: 130 });
    fc.assert(
      fc.property(
        fc.record({
          serverId: text,
          sender: text,
          recipient: text,
          body: fc.uint8Array({ maxLength: 300 }),
          sentAtMs: fc.oneof(fc.integer({ min: 0, max: 300 }), fc.maxSafeNat()),
          clientMsgId: text,
          senderDevice: text,
        }),
        (m) => {
          expect(encodeMessageFields(m).toString('hex')).toBe(Buffer.from(type.encode(m).finish()).toString('hex'));
        },
      ),
      { numRuns: 500 },
    );
  });
});

describe('the hand-written ok Reply encoder', () => {
  it('writes exactly what encodeImEvent writes for an ok Reply, with or without a send result', () => {
    const text = fc.string({ unit: 'grapheme', maxLength: 130 });
    const uint = fc.oneof(fc.integer({ min: 0, max: 300 }), fc.maxSafeNat());
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 0xffffffff }),
        fc.option(fc.record({ serverId: text, convSeq: uint, sentAtMs: uint, clientMsgId: text, duplicate: fc.boolean() }), { nil: undefined }),
        (requestId, sent) => {
          const reply = { requestId, ok: true, errorCode: '', errorMessage: '', retryAfterMs: 0, ...(sent === undefined ? {} : { sent }) };
          expect(encodeOkReply(requestId, sent).toString('hex')).toBe(encodeImEvent({ reply }).toString('hex'));
        },
      ),
      { numRuns: 500 },
    );
  });
});
