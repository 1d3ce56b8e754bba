import type { StepStats } from './im-load-engine.js';

/**
 * The IM bench's pace rule (bench/im-load.ts), apart so that a test can hold it to its words. A step
 * keeps pace when every send of it was acknowledged (within the engine's settle time) and delivered,
 * it offered its whole rate (never fell MAX_BEHIND_S behind), its ack latency did not grow by more than
 * PACE_SLACK_MS from its second second to its last, and its median ack latency is at most MAX_MEDIAN_ACK_MS.
 */
export const PACE_SLACK_MS = 200;
/** A queue standing longer than this is a system at its limit. */
export const MAX_MEDIAN_ACK_MS = 100;
/**
 * A step that missed the rule by at most this factor (every send acked and delivered, median ack and
 * latency growth within MARGIN times their bounds) is "marginal": worth one more run on a shared
 * machine, where another process's burst of seconds can push a step that keeps pace just over a bound.
 * A miss by more is the system beyond its rate, and running it again only piles up a backlog that the
 * next steps (among them the one that decides a target) pay for.
 */
export const MARGIN = 2;

export interface PaceVerdict {
  readonly ok: boolean;
  readonly marginal: boolean;
  /** Mean ack latency of the last second minus that of the second second (ms; 0 when either is empty). */
  readonly growthMs: number;
  readonly medianAckMs: number;
}

export function judgePace(stats: StepStats): PaceVerdict {
  const growthMs = stats.late.n > 0 && stats.early.n > 0 ? stats.late.sum / stats.late.n - stats.early.sum / stats.early.n : 0;
  const medianAckMs = stats.ack.quantile(0.5);
  const complete = !stats.overrun && stats.acked === stats.sent && stats.delivered === stats.sent;
  const ok = complete && growthMs <= PACE_SLACK_MS && medianAckMs <= MAX_MEDIAN_ACK_MS;
  const marginal = !ok && complete && growthMs <= MARGIN * PACE_SLACK_MS && medianAckMs <= MARGIN * MAX_MEDIAN_ACK_MS;
  return { ok, marginal, growthMs, medianAckMs };
}
