import { type Socket, io } from 'socket.io-client';

/**
 * What the broadcast bench's publisher and receivers agree on, whatever carries the bytes (plain TCP,
 * socket.io, livemux): 64-byte ASCII messages whose first character says what they are, a clock every
 * process on the machine shares, and a latency histogram that merges by addition.
 *
 *   `M <phase> <sent at, ms>`   a room message; receivers count it and sampled ones time it
 *   `E <phase> <total> <sent at, ms>`  end of a phase: `total` room messages have been published since the start
 *   `P`                         readiness probe: proves a receiver is in the room; not counted
 *
 * On socket.io, the publisher connects with `?role=publisher` and emits `pub`; receivers get `m`.
 */
export const MESSAGE_BYTES = 64;
export const Kind = { MESSAGE: 0x4d, END: 0x45, PROBE: 0x50 } as const; // 'M', 'E', 'P'

/** Milliseconds on CLOCK_MONOTONIC: one clock for every process on the machine, so times compare across them. */
export function clockMs(): number {
  const [s, ns] = process.hrtime();
  return s * 1e3 + ns / 1e6;
}

const pad = (text: string): string => text.padEnd(MESSAGE_BYTES, '.');
export const roomMessage = (phase: number): string => pad(`M ${phase} ${clockMs().toFixed(3)} `);
export const endMessage = (phase: number, total: number): string => pad(`E ${phase} ${total} ${clockMs().toFixed(3)} `);
export const probeMessage = (): string => pad('P ');

/** The numeric fields of a message: phase, then sent-at (room message) or total and sent-at (end message). */
export function fields(text: string): [number, number, number] {
  const [, a, b, c] = text.split(' ', 4);
  return [Number(a), Number(b), Number(c)];
}

// Buckets 2 % wide from 10 µs up: bucket i holds latencies up to FIRST_MS × GROWTH^i (the last one, anything above ~100 s).
const FIRST_MS = 0.01;
const GROWTH = 1.02;
const BUCKETS = 820;

/** A latency histogram with 2 % resolution, as a plain array so it travels in a JSON line. */
export class LatencyHistogram {
  constructor(readonly counts: number[] = new Array<number>(BUCKETS).fill(0)) {}

  add(ms: number): void {
    const i = ms <= FIRST_MS ? 0 : Math.ceil(Math.log(ms / FIRST_MS) / Math.log(GROWTH));
    this.counts[Math.min(i, BUCKETS - 1)]!++;
  }

  merge(other: readonly number[]): void {
    other.forEach((n, i) => (this.counts[i]! += n));
  }

  get total(): number {
    return this.counts.reduce((a, b) => a + b, 0);
  }

  /** Upper bound of the bucket holding quantile `q` (0..1), in ms; NaN when empty. */
  quantile(q: number): number {
    const rank = q * this.total;
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i]!;
      if (seen >= rank && seen > 0) return FIRST_MS * GROWTH ** i;
    }
    return NaN;
  }
}

/** A socket.io-client connection to the bench's socket.io server (websocket only, no reconnection). */
export function connectSocketIo(port: number, query: Record<string, string> = {}): Promise<Socket> {
  const options = { transports: ['websocket'], reconnection: false, forceNew: true, timeout: 60_000, query };
  const socket = io(`http://127.0.0.1:${port}`, options);
  return new Promise((resolve, reject) => {
    socket.once('connect', () => resolve(socket));
    socket.once('connect_error', reject);
  });
}

/** The first second of a phase is left out of its lag growth: a system's pipeline fills then. */
const ANCHOR_FROM_MS = 1000;

/**
 * How much later than at the start a receiver got the phase's last messages: the least-squares slope of
 * its latency over send time, from the phase's second second to its end, times the phase's length less
 * two seconds (the span PACE_SLACK's bound is written for, bench/broadcast.ts). A receiver that keeps up
 * has a steady latency however long its path; one that falls behind by a share f of the pace gets later
 * by f of the time. Near a coalescing server's peak a message's latency saws up and down by a round of
 * writes (200–500 ms): the slope through every sample averages dozens of rounds, where the difference of
 * two one-second windows' means (until 2026-12-04) moved by up to a round with where the rounds fell,
 * and made a step's verdict near the peak a toss. NaN when fewer than two messages count (very low rates).
 */
export function lagGrowth(sentAt: readonly number[], lagMs: readonly number[], endSentAt: number): number {
  const from = (sentAt[0] ?? NaN) + ANCHOR_FROM_MS;
  let sx = 0;
  let sy = 0;
  let sxx = 0;
  let sxy = 0;
  let k = 0;
  for (let i = 0; i < sentAt.length; i++) {
    if (!(sentAt[i]! >= from && sentAt[i]! < endSentAt)) continue;
    const x = sentAt[i]! - from;
    sx += x;
    sy += lagMs[i]!;
    sxx += x * x;
    sxy += x * lagMs[i]!;
    k++;
  }
  const spread = k > 1 ? sxx - (sx * sx) / k : 0;
  return spread > 0 ? ((sxy - (sx * sy) / k) / spread) * (endSentAt - from - ANCHOR_FROM_MS) : NaN;
}
