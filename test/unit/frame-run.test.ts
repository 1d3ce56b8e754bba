import { describe, expect, it } from 'vitest';
import { HEADER_SIZE, Priority } from '../../src/protocol/constants.js';
import { encodeData } from '../../src/protocol/encoder.js';
import { FrameRun } from '../../src/session/topic-fanout.js';

const payloads = [Buffer.from('ab'), Buffer.from('cde'), Buffer.alloc(0)];
const runBytes = 5 + 3 * HEADER_SIZE;

describe('FrameRun: one turn of a topic, encoded once per session id', () => {
  it('is the DATA frames a single delivery would write, back to back, for that session id', () => {
    const run = new FrameRun(payloads, Priority.HIGH);
    expect(run.payloadBytes).toBe(5);
    expect(run.framesFor(7)).toEqual(Buffer.concat(payloads.map((p) => encodeData(7, Priority.HIGH, p))));
    expect(run.framesFor(9)).toEqual(Buffer.concat(payloads.map((p) => encodeData(9, Priority.HIGH, p))));
    expect(new FrameRun(payloads, Priority.SYSTEM).framesFor(7)).toEqual(Buffer.concat(payloads.map((p) => encodeData(7, Priority.SYSTEM, p))));
  });

  it('shares one buffer between the members whose sessions have the same id', () => {
    const run = new FrameRun(payloads, Priority.HIGH);
    expect(run.framesFor(1)).toBe(run.framesFor(1));
  });

  it('stops encoding past its budget, so scattered session ids cannot multiply memory', () => {
    const run = new FrameRun(payloads, Priority.HIGH, 2 * runBytes);
    expect(run.framesFor(1)).not.toBeNull();
    expect(run.framesFor(3)).not.toBeNull();
    expect(run.framesFor(5)).toBeNull();
    // What was encoded stays shared.
    expect(run.framesFor(1)).toBe(run.framesFor(1));
  });
});
