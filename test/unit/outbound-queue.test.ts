import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { FrameStats } from '../../src/observability/metrics.js';
import { FrameType, MAX_QUEUED_CONTROL_BYTES, Priority } from '../../src/protocol/constants.js';
import { encodeFrame } from '../../src/protocol/encoder.js';
import { OutboundQueue, type QueueOwner } from '../../src/proxy/outbound-queue.js';

/** A socket that never drains (a client that does not read): everything stays in the queue. */
class StuckSocket extends EventEmitter {
  destroyed = false;
  writableNeedDrain = true;
  written: Buffer[] = [];
  ended: Buffer | null = null;
  write(b: Buffer): boolean {
    this.written.push(b);
    return false;
  }
  end(b: Buffer): void {
    this.ended = b;
  }
}

const owner: QueueOwner = { discarded: false, onDequeued() {} };

function queue(maxBytes: number) {
  const socket = new StuckSocket();
  const overflows: string[] = [];
  const q = new OutboundQueue(socket as unknown as Socket, maxBytes, { onDrop() {}, onOverflow: (kind) => overflows.push(kind) }, new FrameStats());
  return { q, socket, overflows };
}

const pong = encodeFrame(FrameType.PONG, 0, 0, Buffer.alloc(64));

describe('OutboundQueue bounds', () => {
  it('counts control frames against the bound, and refuses the one past MAX_QUEUED_CONTROL_BYTES', () => {
    const { q, overflows } = queue(4 * 1024 * 1024);
    const fit = Math.floor(MAX_QUEUED_CONTROL_BYTES / pong.length);
    for (let i = 0; i < fit; i++) q.control(pong);
    expect(q.bytes).toBe(fit * pong.length);
    expect(overflows).toEqual([]);
    q.control(pong);
    expect(overflows).toEqual(['control']);
    expect(q.bytes).toBe(fit * pong.length);
  });

  it('reports a control frame that does not fit the whole bound as total, after evicting low DATA', () => {
    const { q, overflows } = queue(10_000);
    const data = Buffer.alloc(4_000);
    expect(q.admit(4_012, Priority.LOW)).toBe('ok');
    q.data(owner, encodeFrame(FrameType.DATA, Priority.LOW, 1).subarray(0, 12), data, Priority.LOW);
    expect(q.admit(5_000, Priority.HIGH)).toBe('ok');
    q.data(owner, encodeFrame(FrameType.DATA, Priority.HIGH, 1).subarray(0, 12), Buffer.alloc(4_988), Priority.HIGH);
    q.control(Buffer.alloc(1_500, 0x4c));
    expect(overflows).toEqual([]);
    expect(q.bytes).toBe(5_000 + 1_500);
    q.control(Buffer.alloc(4_000, 0x4c));
    expect(overflows).toEqual(['total']);
  });

  it('abort drops what is queued and writes the last frame at once', () => {
    const { q, socket } = queue(1 << 20);
    q.control(pong);
    const error = encodeFrame(FrameType.ERROR, 0, 0, Buffer.from('x'));
    q.abort(error);
    expect(socket.ended).toBe(error);
    expect(q.bytes).toBe(0);
    q.control(pong);
    expect(q.bytes).toBe(0);
  });
});
