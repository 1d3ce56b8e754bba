import { readFileSync, writeFileSync } from 'node:fs';
import type { ChildProcess } from 'node:child_process';
import { expect, onTestFinished } from 'vitest';
import { FrameType } from '../../src/protocol/constants.js';
import { testToken } from './processes.js';
import { RawClient } from './raw-client.js';

/**
 * Tools of the adversarial suite (test/integration/hostile-*.test.ts): the proxy's memory as the kernel
 * sees it, a well-behaved canary client timing its echoes while an attack runs, and a writer that
 * floods a socket as fast as the proxy reads it, within a byte budget.
 */

/** Resident set size now and at its peak (VmHWM), in bytes, of process `pid`. */
export function memoryOf(pid: number): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
  return { rss: kib('VmRSS'), peak: kib('VmHWM') };
}

/** Resets the peak RSS of `pid` to its current RSS (Linux `clear_refs` 5), so each attack is measured alone. */
export function resetPeak(pid: number): void {
  writeFileSync(`/proc/${pid}/clear_refs`, '5');
}

export const MiB = 1024 * 1024;

/** The stated bound of the proxy's peak RSS during an attack on its default limits (it idles at ~85 MiB). */
export const RSS_BOUND = 200 * MiB;

/**
 * The stated bound of a canary round trip during an attack: seconds-long stalls were what the attacks
 * caused before (5 s and more); this leaves room for a machine shared with other work.
 */
export const CANARY_BOUND_MS = 3_000;

/** What a canary saw: echo round trips answered, their latencies, and the ones that never came back. */
export interface CanaryReport {
  answered: number;
  maxMs: number;
  p50Ms: number;
  p99Ms: number;
  /** Round trips not answered within the canary's bound, or a connection lost. */
  failures: string[];
}

/**
 * A well-behaved client on the attacked proxy: one connection, one echo session, one message in flight,
 * a new one every `intervalMs`. A round trip slower than `boundMs`, or the connection ending, is a
 * failure. Its windows are large so it never waits for credit.
 */
export class Canary {
  private readonly latencies: number[] = [];
  private readonly failures: string[] = [];
  private running = true;
  private readonly loop: Promise<void>;
  private report: Promise<CanaryReport> | null = null;

  private constructor(
    private readonly client: RawClient,
    private readonly intervalMs: number,
    private readonly boundMs: number,
  ) {
    this.loop = this.run();
  }

  static async start(port: number, token: string, opts: { intervalMs?: number; boundMs?: number } = {}): Promise<Canary> {
    const client = await RawClient.handshake(port, token, { sessionWindow: 0x7fff_ffff, connectionWindow: 0x7fff_ffff });
    client.open(1);
    await client.next(FrameType.OPEN_OK, 1);
    const canary = new Canary(client, opts.intervalMs ?? 50, opts.boundMs ?? CANARY_BOUND_MS);
    // A test failing half-way must not leave an open session holding the proxy's drain at shutdown.
    onTestFinished(() => void canary.stop());
    return canary;
  }

  private async run(): Promise<void> {
    let closed = false;
    void this.client.closed.then(() => (closed = true));
    for (let n = 0; this.running; n++) {
      if (closed) {
        this.failures.push('connection closed');
        return;
      }
      const text = `canary ${n}`;
      const started = performance.now();
      this.client.data(1, text);
      try {
        const frame = await this.client.next(FrameType.DATA, 1, this.boundMs);
        if (frame.payload.toString() !== text) this.failures.push(`round trip ${n}: got "${frame.payload.toString()}"`);
        this.latencies.push(performance.now() - started);
      } catch {
        this.failures.push(`round trip ${n}: no echo within ${this.boundMs} ms`);
        return;
      }
      await new Promise((r) => setTimeout(r, this.intervalMs));
    }
  }

  /** Stops the loop after its round trip in flight and reports; the connection is closed. Idempotent. */
  stop(): Promise<CanaryReport> {
    this.report ??= this.finish();
    return this.report;
  }

  private async finish(): Promise<CanaryReport> {
    this.running = false;
    await this.loop;
    this.client.destroy();
    const sorted = [...this.latencies].sort((a, b) => a - b);
    return {
      answered: sorted.length,
      maxMs: sorted.at(-1) ?? NaN,
      p50Ms: sorted[Math.floor(sorted.length / 2)] ?? NaN,
      p99Ms: sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * 0.99))] ?? NaN,
      failures: this.failures,
    };
  }
}

/**
 * Writes `unit` (a run of whole frames) to `client` again and again, waiting for the socket to drain
 * between writes, until `budgetBytes` are written or the connection closes. Resolves with the bytes
 * written. Bounded in bytes and, through `deadlineMs`, in time.
 */
export async function flood(client: RawClient, unit: Buffer, budgetBytes: number, deadlineMs = 60_000): Promise<number> {
  let written = 0;
  let closed = false;
  void client.closed.then(() => (closed = true));
  const deadline = Date.now() + deadlineMs;
  while (written + unit.length <= budgetBytes && !closed && Date.now() < deadline) {
    if (!client.write(unit)) await Promise.race([client.drained(), client.closed]);
    written += unit.length;
  }
  return written;
}

/** `frame` repeated until the run is about `bytes` long (whole frames only). */
export function repeatFrame(frame: Buffer, bytes: number): Buffer {
  const n = Math.max(1, Math.floor(bytes / frame.length));
  return Buffer.concat(Array.from({ length: n }, () => frame));
}

/**
 * A heavy client that plays by the rules: one echo session, DATA of `chunk` bytes sent as fast as the
 * proxy's credit allows (it follows WINDOW_UPDATEs), every echo read and thrown away, S→C windows as
 * large as the protocol allows so the proxy never waits for its credit. Many of these fill the proxy's
 * backend stream; a fair proxy still answers a light client next to them at once.
 */
export class WindowFiller {
  /** Bytes of echo received. */
  received = 0;
  /** Round trips of its own messages, ms (send to the echo of its last byte). */
  readonly latencies: number[] = [];
  /** Messages sent and not yet echoed: cumulative bytes at their end, and when they were sent. */
  private readonly inFlight: { end: number; at: number }[] = [];
  private sent = 0;
  private connCredit = 0;
  private sessionCredit = 0;
  private stopped = false;

  private constructor(
    private readonly client: RawClient,
    private readonly payload: Buffer,
  ) {}

  static async start(port: number, token: string, chunk = 16 * 1024): Promise<WindowFiller> {
    const client = await RawClient.handshake(port, token, { sessionWindow: 0x7fff_ffff, connectionWindow: 0x7fff_ffff });
    const welcome = client.welcome!;
    client.open(1);
    await client.next(FrameType.OPEN_OK, 1);
    const filler = new WindowFiller(client, Buffer.alloc(chunk, 0x66));
    filler.connCredit = welcome.limits.connectionWindow;
    filler.sessionCredit = welcome.limits.sessionWindow;
    client.keepData = false;
    client.onFrame = (f) => filler.onFrame(f.type, f.sessionId, f.payload);
    client.onData = (n) => filler.onEcho(n);
    filler.pump();
    onTestFinished(() => filler.stop());
    return filler;
  }

  private onFrame(type: FrameType, sessionId: number, payload: Buffer): boolean {
    if (type !== FrameType.WINDOW_UPDATE) return false;
    const increment = payload.readUInt32BE(0);
    if (sessionId === 0) this.connCredit += increment;
    else this.sessionCredit += increment;
    this.pump();
    return true;
  }

  private onEcho(bytes: number): void {
    this.received += bytes;
    const now = performance.now();
    let done = 0;
    while (done < this.inFlight.length && this.inFlight[done]!.end <= this.received) this.latencies.push(now - this.inFlight[done++]!.at);
    this.inFlight.splice(0, done);
  }

  private pump(): void {
    const n = this.payload.length;
    while (!this.stopped && this.connCredit >= n && this.sessionCredit >= n) {
      this.connCredit -= n;
      this.sessionCredit -= n;
      this.sent += n;
      this.inFlight.push({ end: this.sent, at: performance.now() });
      this.client.data(1, this.payload);
    }
  }

  /** Stops sending and closes the connection. Idempotent. */
  stop(): void {
    this.stopped = true;
    this.client.destroy();
  }
}

/** The proxy an attack runs against: its client port and its process. */
export interface AttackedProxy {
  readonly port: number;
  readonly child: ChildProcess;
}

/**
 * What every adversarial test asserts besides the code the attacker gets: from {@link Watch.start} to
 * {@link Watch.check}, a canary on the same proxy (a user of its own) was answered within its bound,
 * the proxy's peak RSS stayed under `rssBound`, and the proxy is still running.
 */
export class Watch {
  private constructor(
    private readonly proxy: AttackedProxy,
    private readonly canary: Canary,
    private readonly rssBound: number,
  ) {}

  static async start(
    proxy: AttackedProxy,
    opts: { rssBound?: number; canaryUser?: string; intervalMs?: number; boundMs?: number } = {},
  ): Promise<Watch> {
    resetPeak(proxy.child.pid!);
    const canary = await Canary.start(proxy.port, await testToken(opts.canaryUser ?? 'canary'), opts);
    return new Watch(proxy, canary, opts.rssBound ?? RSS_BOUND);
  }

  /** Stops the canary and asserts; resolves with its report for tests that look further. */
  async check(): Promise<CanaryReport> {
    const report = await this.canary.stop();
    expect(report.failures).toEqual([]);
    expect(report.answered).toBeGreaterThan(0);
    expect(this.proxy.child.exitCode).toBeNull();
    expect(memoryOf(this.proxy.child.pid!).peak).toBeLessThan(this.rssBound);
    return report;
  }
}

/** Runs `attack` under a {@link Watch} (default bounds unless `opts` says); resolves with what `attack` resolved with. */
export async function underAttack<T>(proxy: AttackedProxy, attack: () => Promise<T>, opts: { rssBound?: number } = {}): Promise<T> {
  const watch = await Watch.start(proxy, opts);
  const result = await attack();
  await watch.check();
  return result;
}
