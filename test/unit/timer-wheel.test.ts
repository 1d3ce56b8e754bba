import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { TimerWheel, WheelEntry } from '../../src/proxy/timer-wheel.js';

/** A wheel on a fake clock, driven by hand. */
function fakeWheel(tickMs = 100, slots = 8): { wheel: TimerWheel; at: (t: number) => void } {
  let now = 0;
  const wheel = new TimerWheel({ tickMs, slots, clock: () => now, autoStart: false });
  return {
    wheel,
    at(t: number) {
      now = t;
      wheel.advance(t);
    },
  };
}

describe('TimerWheel', () => {
  it('fires an entry at the first tick at or after its due time, never before', () => {
    const { wheel, at } = fakeWheel();
    const fired: number[] = [];
    const e = new WheelEntry((now) => fired.push(now));
    wheel.schedule(e, 250);
    at(299);
    expect(fired).toEqual([]);
    at(300);
    expect(fired).toEqual([300]);
    expect(e.scheduled).toBe(false);
    expect(wheel.size).toBe(0);
  });

  it('keeps entries due after more than one revolution for their round', () => {
    const { wheel, at } = fakeWheel(100, 4);
    const fired: number[] = [];
    wheel.schedule(new WheelEntry((now) => fired.push(now)), 1_050);
    for (let t = 100; t <= 1_100; t += 100) at(t);
    expect(fired).toEqual([1_100]);
  });

  it('moves a rescheduled entry and forgets a cancelled one', () => {
    const { wheel, at } = fakeWheel();
    const fired: string[] = [];
    const a = new WheelEntry(() => fired.push('a'));
    const b = new WheelEntry(() => fired.push('b'));
    wheel.schedule(a, 100);
    wheel.schedule(b, 100);
    wheel.schedule(a, 500);
    wheel.cancel(b);
    at(400);
    expect(fired).toEqual([]);
    at(500);
    expect(fired).toEqual(['a']);
  });

  it('lets a callback cancel or move another entry due in the same tick', () => {
    const { wheel, at } = fakeWheel();
    const fired: string[] = [];
    const b = new WheelEntry(() => fired.push('b'));
    const c = new WheelEntry(() => fired.push('c'));
    const a = new WheelEntry(() => {
      fired.push('a');
      wheel.cancel(b);
      wheel.schedule(c, 700);
    });
    // The latest scheduled runs first within a tick: a, then what it left of b and c.
    for (const e of [c, b, a]) wheel.schedule(e, 200);
    at(200);
    expect(fired).toEqual(['a']);
    at(700);
    expect(fired).toEqual(['a', 'c']);
    expect(wheel.size).toBe(0);
  });

  it('schedules an entry due in the past for the next tick', () => {
    const { wheel, at } = fakeWheel();
    at(1_000);
    const fired: number[] = [];
    wheel.schedule(new WheelEntry((now) => fired.push(now)), 10);
    at(1_050);
    expect(fired).toEqual([]);
    at(1_100);
    expect(fired).toEqual([1_100]);
  });

  it('property: every entry fires exactly once, within one tick after its due time', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 5_000 }), { maxLength: 60 }), fc.integer({ min: 1, max: 37 }), (dues, step) => {
        const { wheel, at } = fakeWheel(100, 8);
        const fired = new Map<number, number[]>();
        dues.forEach((due, i) => wheel.schedule(new WheelEntry((now) => fired.set(i, [...(fired.get(i) ?? []), now])), due));
        for (let t = 0; t <= 5_200; t += step) at(t);
        at(5_200);
        dues.forEach((due, i) => {
          const times = fired.get(i) ?? [];
          expect(times).toHaveLength(1);
          expect(times[0]!).toBeGreaterThanOrEqual(due);
          expect(times[0]! - due).toBeLessThan(100 + step);
        });
      }),
    );
  });

  it('runs on its own timer, at most one tick late', async () => {
    const wheel = new TimerWheel({ tickMs: 20 });
    const due = performance.now() + 50;
    const firedAt = await new Promise<number>((resolve) => wheel.schedule(new WheelEntry((now) => resolve(now)), due));
    expect(firedAt).toBeGreaterThanOrEqual(due);
    expect(wheel.size).toBe(0);
  });
});
