import pino from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { MemoryInboxStore } from '../../src/backends/kit/inbox/memory-inbox-store.js';
import { Presence, type PresenceSession } from '../../src/backends/im/presence.js';
import type { ImStore } from '../../src/backends/im/store.js';

describe('IM presence renewals', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('renews every open session once per third of the TTL, a slice at a time, and no closed one', async () => {
    vi.useFakeTimers();
    const renewals: string[][] = [];
    const store = {
      sessionOnline: async () => false,
      sessionOffline: async () => false,
      renewSessions: async (sessions: readonly { user: string; sessionKey: string }[]) => {
        renewals.push(sessions.map((s) => s.sessionKey));
      },
    } as unknown as ImStore;
    const bus = new MemoryInboxStore();
    const presence = new Presence({ store, bus, ttlMs: 3_000, now: Date.now, log: pino({ level: 'silent' }) });
    const sessions: PresenceSession[] = Array.from({ length: 25 }, (_, i) => ({ userId: `u${i}`, sessionKey: `s${i}`, send: () => undefined }));
    try {
      for (const s of sessions) await presence.opened(s);
      const round = async (): Promise<string[][]> => {
        renewals.length = 0;
        await vi.advanceTimersByTimeAsync(1_000);
        return [...renewals];
      };
      const first = await round();
      expect(first.flat().sort()).toEqual(sessions.map((s) => s.sessionKey).sort());
      // 25 sessions in 10 slices: no write renews more than 3 of them.
      expect(Math.max(...first.map((r) => r.length))).toBeLessThanOrEqual(3);
      for (const s of sessions.slice(0, 5)) await presence.closed(s);
      const second = await round();
      expect(second.flat().sort()).toEqual(sessions.slice(5).map((s) => s.sessionKey).sort());
    } finally {
      presence.close();
      await bus.close();
    }
  });
});
