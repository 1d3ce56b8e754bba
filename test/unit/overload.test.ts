import { describe, expect, it } from 'vitest';
import { OverloadMonitor, OverloadState, type OverloadReading } from '../../src/proxy/overload.js';

const settings = { memoryLimitBytes: 0, stopAcceptingAt: 0.8, shedAt: 0.9, maxEventLoopLagMs: 100, checkIntervalMs: 500 };

function monitor() {
  let reading: OverloadReading = { memory: 0.1, lagMs: 0 };
  const changes: number[] = [];
  let sheds = 0;
  const m = new OverloadMonitor(settings, { changed: (s) => changes.push(s), shed: () => sheds++ }, () => reading);
  return {
    m,
    changes,
    sheds: () => sheds,
    set: (r: Partial<OverloadReading>) => {
      reading = { ...reading, ...r };
      m.check();
    },
  };
}

describe('OverloadMonitor', () => {
  it('refuses from stop_accepting_at, sheds from shed_at, and recovers when the readings do', () => {
    const t = monitor();
    t.set({ memory: 0.5 });
    expect(t.m.state).toBe(OverloadState.NORMAL);
    t.set({ memory: 0.85 });
    expect(t.m.refusing).toBe(true);
    expect(t.sheds()).toBe(0);
    t.set({ memory: 0.95 });
    expect(t.m.state).toBe(OverloadState.SHEDDING);
    t.set({ memory: 0.95 });
    expect(t.sheds()).toBe(2);
    t.set({ memory: 0.3 });
    expect(t.m.state).toBe(OverloadState.NORMAL);
    expect(t.changes).toEqual([1, 2, 0]);
  });

  it('counts lag that lasts: refuses after two checks over it, sheds after three at twice it (one GC pause is not overload)', () => {
    const t = monitor();
    t.set({ lagMs: 150 });
    expect(t.m.state).toBe(OverloadState.NORMAL);
    t.set({ lagMs: 250 });
    expect(t.m.state).toBe(OverloadState.REFUSING);
    t.set({ lagMs: 250 });
    expect(t.m.state).toBe(OverloadState.REFUSING);
    t.set({ lagMs: 250 });
    expect(t.m.state).toBe(OverloadState.SHEDDING);
    t.set({ lagMs: 0 });
    expect(t.m.state).toBe(OverloadState.NORMAL);
  });

  it('reads the real process when no reading is injected', () => {
    const m = new OverloadMonitor({ ...settings, memoryLimitBytes: 1 }, { changed() {}, shed() {} });
    m.check();
    expect(m.state).toBe(OverloadState.SHEDDING);
    m.stop();
  });
});
