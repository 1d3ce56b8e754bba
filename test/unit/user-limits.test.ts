import { describe, expect, it } from 'vitest';
import { LocalUserLimits } from '../../src/proxy/user-limits.js';

describe('LocalUserLimits', () => {
  it('gives each user a burst, then the rate, whatever connection the OPEN comes from', async () => {
    const l = new LocalUserLimits({ openRate: 10, openBurst: 3 });
    let admitted = 0;
    for (let i = 0; i < 10; i++) if (l.tryOpen('u', 0)) admitted++;
    expect(admitted).toBe(3);
    expect(l.tryOpen('u', 50)).toBe(false);
    expect(l.tryOpen('u', 100)).toBe(true);
    expect(l.tryOpen('other', 100)).toBe(true);
    expect(l.retryAfterMs).toBe(100);
    await l.close();
  });

  it('forgets a user whose bucket has refilled, so memory follows the active users only', async () => {
    const l = new LocalUserLimits({ openRate: 10, openBurst: 5 });
    l.tryOpen('a', 0);
    l.tryOpen('b', 400);
    l.sweep(499);
    expect(l.size).toBe(2);
    l.sweep(500);
    expect(l.size).toBe(1);
    await l.close();
  });
});
