import { describe, expect, it } from 'vitest';
import { SendWindow } from '../../src/client/send-window.js';
import { Code } from '../../src/protocol/codes.js';
import { MAX_WINDOW } from '../../src/protocol/constants.js';
import { LivemuxError, ProtocolError } from '../../src/protocol/errors.js';

describe('SendWindow credit accounting', () => {
  it('starts with the announced credit and spends it', () => {
    const window = new SendWindow(100, 'session 1');
    expect(window.available).toBe(100);
    expect(window.canTake(100)).toBe(true);
    window.take(60);
    expect(window.available).toBe(40);
    expect(window.canTake(41)).toBe(false);
    window.take(40);
    expect(window.available).toBe(0);
    expect(window.canTake(0)).toBe(true);
  });

  it('refuses to take more than is available, leaving the credit untouched', () => {
    const window = new SendWindow(10, 'session 1');
    expect(() => window.take(11)).toThrow(LivemuxError);
    expect(() => window.take(11)).toThrow('session 1 window: cannot take 11 bytes (10 available, 0 waiting)');
    expect(window.available).toBe(10);
  });

  it('adds WINDOW_UPDATE increments', () => {
    const window = new SendWindow(0, 'connection');
    window.grant(5);
    window.grant(7);
    expect(window.available).toBe(12);
  });
});

describe('SendWindow waiting sends', () => {
  it('releases waiting claims strictly in order as WINDOW_UPDATEs arrive', () => {
    const window = new SendWindow(0, 'connection');
    const released: string[] = [];
    window.wait(30, () => released.push('a'));
    window.wait(50, () => released.push('b'));
    window.wait(10, () => released.push('c'));
    expect(window.waiting).toBe(3);

    window.grant(40);
    // "c" would fit in the 10 left over, but it must not overtake "b".
    expect(released).toEqual(['a']);
    expect(window.available).toBe(10);

    window.grant(50);
    expect(released).toEqual(['a', 'b', 'c']);
    expect(window.available).toBe(0);
    expect(window.waiting).toBe(0);
  });

  it('runs each callback inside grant, after its bytes are taken', () => {
    const window = new SendWindow(0, 'connection');
    const seen: number[] = [];
    window.wait(30, () => seen.push(window.available));
    window.wait(20, () => seen.push(window.available));
    window.grant(60);
    expect(seen).toEqual([30, 10]);
  });

  it('lets nobody take credit past a waiting claim', () => {
    const window = new SendWindow(10, 'connection');
    window.wait(20, () => {});
    expect(window.available).toBe(10);
    expect(window.canTake(5)).toBe(false);
    expect(() => window.take(5)).toThrow(LivemuxError);
  });

  it('refuses to queue a claim that fits now', () => {
    const window = new SendWindow(10, 'connection');
    expect(() => window.wait(5, () => {})).toThrow('connection window: 5 bytes fit now, take them instead of waiting');
  });

  it('serves the claims behind a withdrawn head that now fit', () => {
    const window = new SendWindow(15, 'connection');
    const released: string[] = [];
    const withdrawA = window.wait(20, () => released.push('a'));
    window.wait(10, () => released.push('b'));
    window.wait(10, () => released.push('c'));
    withdrawA();
    expect(released).toEqual(['b']);
    expect(window.available).toBe(5);
    expect(window.waiting).toBe(1);
  });

  it('withdraws a claim in the middle without serving anyone early', () => {
    const window = new SendWindow(0, 'connection');
    const released: string[] = [];
    window.wait(10, () => released.push('a'));
    const withdrawB = window.wait(10, () => released.push('b'));
    window.wait(10, () => released.push('c'));
    withdrawB();
    expect(released).toEqual([]);
    window.grant(20);
    expect(released).toEqual(['a', 'c']);
  });

  it('ignores withdrawing a claim that was already served', () => {
    const window = new SendWindow(0, 'connection');
    const released: string[] = [];
    const withdrawA = window.wait(10, () => released.push('a'));
    window.grant(10);
    withdrawA();
    expect(released).toEqual(['a']);
    expect(window.available).toBe(0);
  });

  it('keeps order when a callback queues a new claim or withdraws another', () => {
    const window = new SendWindow(0, 'connection');
    const released: string[] = [];
    let withdrawC = (): void => {};
    window.wait(10, () => {
      released.push('a');
      window.wait(10, () => released.push('d')); // queued behind b and c
      withdrawC();
    });
    window.wait(10, () => released.push('b'));
    withdrawC = window.wait(10, () => released.push('c'));
    window.grant(40);
    expect(released).toEqual(['a', 'b', 'd']);
    expect(window.available).toBe(10);
  });
});

describe('SendWindow overflow', () => {
  it('treats growth past 2^31-1 as a connection-level FLOW_CONTROL_ERROR', () => {
    const window = new SendWindow(MAX_WINDOW - 10, 'session 3');
    window.grant(10); // exactly at the limit is fine
    expect(window.available).toBe(MAX_WINDOW);
    let error: unknown;
    try {
      window.grant(1);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ProtocolError);
    const protocolError = error as ProtocolError;
    expect(protocolError.wireCode).toBe(Code.FLOW_CONTROL_ERROR);
    expect(protocolError.code).toBe('ERR_FLOW_CONTROL_ERROR');
    expect(protocolError.sessionScoped).toBe(false);
    expect(protocolError.message).toBe(`WINDOW_UPDATE: session 3 window overflow (${MAX_WINDOW} + 1 vs 2^31-1)`);
    expect(window.available).toBe(MAX_WINDOW);
  });

  it('treats the largest u32 increment as an overflow even on an empty window', () => {
    const window = new SendWindow(0, 'connection');
    expect(() => window.grant(0xffff_ffff)).toThrow(ProtocolError);
    expect(window.available).toBe(0);
  });

  it('treats a zero increment as a FLOW_CONTROL_ERROR', () => {
    const window = new SendWindow(5, 'connection');
    expect(() => window.grant(0)).toThrow('WINDOW_UPDATE: connection increment must be at least 1 (0)');
    expect(window.available).toBe(5);
  });

  it('serves no waiting claim when a grant is refused', () => {
    const window = new SendWindow(MAX_WINDOW - 5, 'connection');
    const released: string[] = [];
    window.wait(MAX_WINDOW, () => released.push('a'));
    expect(() => window.grant(10)).toThrow(ProtocolError);
    expect(released).toEqual([]);
  });
});
