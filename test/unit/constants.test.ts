import { readFileSync } from 'node:fs';
import { describe, it, expect } from 'vitest';
import * as C from '../../src/protocol/constants.js';
import { PACKAGE_ROOT } from '../../src/paths.js';
import { tableRows } from '../helpers/markdown-table.js';

// Each literal below is a wire value: if one of these assertions fails, the change breaks every
// deployed client, so fix the code rather than the test unless a new protocol version is intended.

describe('wire constants', () => {
  it('pins the header layout', () => {
    expect(C.MAGIC).toBe(0x4c);
    expect(C.FRAME_VERSION).toBe(1);
    expect(C.SUPPORTED_VERSIONS).toEqual([1]);
    expect(C.HEADER_SIZE).toBe(12);
  });

  it('pins every frame type value', () => {
    expect(C.FrameType).toEqual({
      HELLO: 1,
      WELCOME: 2,
      OPEN: 3,
      OPEN_OK: 4,
      OPEN_FAIL: 5,
      DATA: 6,
      CLOSE: 7,
      RESET: 8,
      PING: 9,
      PONG: 10,
      GOAWAY: 11,
      WINDOW_UPDATE: 12,
      ERROR: 13,
    });
    expect(C.MAX_FRAME_TYPE).toBe(13);
  });

  it('names every frame type by value', () => {
    for (const [name, value] of Object.entries(C.FrameType)) expect(C.FRAME_TYPE_NAMES[value]).toBe(name);
    expect(Object.keys(C.FRAME_TYPE_NAMES)).toHaveLength(13);
  });

  it('pins which frames are connection frames (session id 0)', () => {
    expect([...C.CONNECTION_FRAMES].sort((a, b) => a - b)).toEqual([1, 2, 9, 10, 11, 13]);
  });

  it('pins priorities and flag masks', () => {
    expect(C.Priority).toEqual({ SYSTEM: 0, HIGH: 1, LOW: 2 });
    expect(C.PRIORITY_NAMES).toEqual(['system', 'high', 'low']);
    expect(C.FLAG_PRIORITY_MASK).toBe(0b11);
    expect(C.FLAG_BATCH).toBe(0b100);
    expect(C.DATA_FLAGS_MASK).toBe(0b111);
  });

  it('pins the fixed payload limits', () => {
    expect(C.MAX_PING_PAYLOAD).toBe(64);
    expect(C.WINDOW_UPDATE_SIZE).toBe(4);
    expect(C.MAX_WINDOW).toBe(2 ** 31 - 1);
    expect(C.MAX_SESSION_ID).toBe(2 ** 32 - 1);
    expect(C.MAX_CONTROL_PAYLOAD).toBe(16_384);
    expect(C.MAX_PIPELINED).toBe(64);
  });

  it('pins the defaults', () => {
    expect(C.Defaults).toEqual({
      handshakeTimeoutMs: 10_000,
      heartbeatIntervalMs: 25_000,
      heartbeatMisses: 2,
      idleTimeoutMs: 300_000,
      maxSessions: 64,
      maxPayload: 131_072,
      sessionWindow: 262_144,
      connectionWindow: 1_048_576,
      outboundQueueBytes: 4_194_304,
      openResetRate: 100,
      drainTimeoutMs: 30_000,
      halfCloseTimeoutMs: 10_000,
      lowPriorityRate: 20,
      lowPriorityMerge: 16,
    });
  });
});

describe('PROTOCOL.md §11 Defaults and limits', () => {
  const doc = readFileSync(`${PACKAGE_ROOT}/PROTOCOL.md`, 'utf8');
  const heading = '## §11 Defaults and limits';

  it('lists every default with its value', () => {
    const rows = tableRows(doc, heading, '| setting | Defaults key | value | announced in | meaning |');
    const documented = Object.fromEntries(rows.map((r) => [r[1], Number(r[2])]));
    expect(documented).toEqual(C.Defaults);
  });

  it('lists the fixed limits with the values of their constants', () => {
    const rows = tableRows(doc, heading, '| limit | constant | value | meaning |');
    const documented = Object.fromEntries(rows.filter((r) => r[1] !== '—').map((r) => [r[1], Number(r[2])]));
    expect(documented).toEqual({
      HEADER_SIZE: C.HEADER_SIZE,
      FRAME_VERSION: C.FRAME_VERSION,
      MAGIC: C.MAGIC,
      MAX_CONTROL_PAYLOAD: C.MAX_CONTROL_PAYLOAD,
      MAX_PING_PAYLOAD: C.MAX_PING_PAYLOAD,
      WINDOW_UPDATE_SIZE: C.WINDOW_UPDATE_SIZE,
      MAX_WINDOW: C.MAX_WINDOW,
      MAX_SESSION_ID: C.MAX_SESSION_ID,
    });
  });
});
