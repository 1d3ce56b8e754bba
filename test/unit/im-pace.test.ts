import { describe, expect, it } from 'vitest';
import { newStepStats, type StepStats } from '../../bench/im-load-engine.js';
import { MARGIN, MAX_MEDIAN_ACK_MS, PACE_SLACK_MS, judgePace } from '../../bench/im-pace.js';

/** A step of 1,000 sends, every one acked at `ackMs` (and delivered), whose ack latency grew by `growthMs`. */
function step(ackMs: number, growthMs = 0, changes: Partial<StepStats> = {}): StepStats {
  const stats = newStepStats();
  stats.sent = stats.acked = stats.delivered = 1_000;
  for (let i = 0; i < 1_000; i++) stats.ack.add(ackMs);
  stats.early = { sum: 100 * ackMs, n: 100 };
  stats.late = { sum: 100 * (ackMs + growthMs), n: 100 };
  return Object.assign(stats, changes);
}

describe('the IM bench pace rule', () => {
  it('keeps pace with a short, steady queue', () => {
    expect(judgePace(step(5, 10))).toMatchObject({ ok: true, marginal: false });
  });

  it('calls a miss within twice the bounds marginal (worth one more run on a shared machine)', () => {
    expect(judgePace(step(1.5 * MAX_MEDIAN_ACK_MS))).toMatchObject({ ok: false, marginal: true });
    expect(judgePace(step(5, 1.5 * PACE_SLACK_MS))).toMatchObject({ ok: false, marginal: true });
  });

  it('does not call marginal a step hopelessly behind, nor one that lost or never offered sends', () => {
    // Session 21's reruns: 16,000/s with a median ack of ~2 s; 12,000/s at 0.65-1.5 s.
    expect(judgePace(step(2_000))).toMatchObject({ ok: false, marginal: false });
    expect(judgePace(step(650))).toMatchObject({ ok: false, marginal: false });
    expect(judgePace(step(5, (MARGIN + 0.5) * PACE_SLACK_MS))).toMatchObject({ ok: false, marginal: false });
    expect(judgePace(step(5, 0, { acked: 999 }))).toMatchObject({ ok: false, marginal: false });
    expect(judgePace(step(5, 0, { delivered: 999 }))).toMatchObject({ ok: false, marginal: false });
    expect(judgePace(step(5, 0, { overrun: true }))).toMatchObject({ ok: false, marginal: false });
  });
});
