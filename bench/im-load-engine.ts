import { LatencyHistogram } from './broadcast-protocol.js';

/**
 * The IM bench's load engines (bench/im-load.ts): what does the per-send socket work of 2,000 phones —
 * connect every user, offer sends at a rate, count acks and deliveries — apart from what decides
 * (step search, pace rule, report), which stays in bench/im-load.ts for both. Two implementations:
 * the in-process Node engine (bench/im-load-node.ts) and the native one (bench/im-load-native.ts,
 * bench/native/im-load.c), which spends a fraction of the CPU per send so that the system under test,
 * not the generator, is what runs out of CPU on a small machine.
 */

/** One user of the load: its own connection, HELLO with `token`, sends to `partner`. */
export interface LoadUser {
  readonly name: string;
  readonly partner: string;
  readonly token: string;
}

/** What every engine is started with. */
export interface LoadOptions {
  readonly port: number;
  readonly users: readonly LoadUser[];
  /** `im`: IM sends on session 1 of business im (device_id bench); `echo`: 64-byte DATA echoed by the echo backend. */
  readonly business: 'im' | 'echo';
  readonly bodyBytes: number;
  /** The highest rate a step will offer (sizes the native engine's table of sends in flight). */
  readonly maxRate: number;
  /** The longest a step offers while behind (seconds of sends unacknowledged). */
  readonly maxBehindS: number;
}

/** One step: offer `rate` sends/s for `ms` (tagged `step`), then wait for its acks and deliveries. */
export interface StepPlan {
  readonly step: number;
  readonly rate: number;
  readonly ms: number;
  /** Longest wait for every ack after the offering ended… */
  readonly settleMs: number;
  /** …and then for every delivery. */
  readonly deliverMs: number;
}

/** What a step's sends came to, counted on the engine's clock (sender and recipient both live in it). */
export interface StepStats {
  sent: number;
  acked: number;
  delivered: number;
  /** The step stopped offering early: more than maxBehindS seconds of its sends were unacknowledged. */
  overrun: boolean;
  ack: LatencyHistogram;
  recipient: LatencyHistogram;
  /** Ack latency sums of sends made in the step's second and last seconds, for the pace check. */
  early: { sum: number; n: number };
  late: { sum: number; n: number };
  /** CPU time the engine spent on the step (µs). */
  cpuUs: number;
}

export interface LoadEngine {
  /** The processes doing the engine's work, whose CPU time is the generator's. */
  readonly pids: readonly number[];
  /** Runs one step. Rejects (the run fails loudly) if a send is refused. */
  step(plan: StepPlan): Promise<StepStats>;
  /**
   * Waits up to `ms` for every send to be acknowledged and every acknowledged send delivered (a step
   * that fell behind leaves a backlog the next step must not measure), then `quietMs` more, then
   * forgets what is still outstanding.
   */
  drain(ms: number, quietMs: number): Promise<void>;
  close(): void;
}

/** The ImClient's ack policy (src/client/im-client.ts): entries acknowledged at once once this many… */
export const ACK_EVERY = 64;
/** …else this long after the first unacknowledged one. */
export const ACK_DELAY_MS = 1_000;

export const newStepStats = (): StepStats => ({
  sent: 0,
  acked: 0,
  delivered: 0,
  overrun: false,
  ack: new LatencyHistogram(),
  recipient: new LatencyHistogram(),
  early: { sum: 0, n: 0 },
  late: { sum: 0, n: 0 },
  cpuUs: 0,
});
