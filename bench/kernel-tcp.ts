import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { totalmem } from 'node:os';

/**
 * Two kernel TCP settings a broadcast bench changes for its run, and puts back after it.
 *
 * The TCP metrics cache, off and flushed. When a connection closes, Linux saves what it learned of the
 * path (RTT and its variance, reordering, ssthresh) per destination address, and every new connection
 * to that address starts from it. Real receivers are phones, each with its own address, so one
 * receiver's losses never shape another's connection. The bench's 10,000 receivers share one loopback
 * address, so a room that collapsed (hundreds of thousands of segments retransmitted) hands its figures
 * to every connection of the next room: after one such pass (2026-12-03 22:09) the cache held, for
 * 127.0.0.1, an RTT of 18 ms (loopback's is tens of µs) and a reordering of 6 (3 by default: later fast
 * retransmits, more timeouts).
 *
 * The machine's TCP memory limits (tcp_mem), raised to a third, a half and two thirds of its memory
 * (7.8 / 11.8 / 15.7 GiB here).
 * The kernel sizes them for a server (here 1.1 / 1.5 / 2.2 GiB of 23 GiB), but in the bench this
 * machine also holds every receiver's receive queue, which in production sits on 10,000 phones. Near
 * its peak a server writes in rounds of 200–500 ms, the receivers' queues hold up to a round of
 * messages each, and with the defaults their sum passes the pressure mark: the kernel then drops what
 * it cannot charge (TcpExtTCPRcvQDrop), every drop a retransmission and a stall of its connection, and
 * a step that was keeping pace collapses. The C relay at 6,358 messages/s, five 8 s steps each
 * (2026-12-04 11:18): with the defaults 2 kept pace, with 43,537–320,768 segments retransmitted a
 * step; raised, 4 did, with 5,968–28,715, at the same server CPU per delivery (0.016–0.017 µs).
 *
 * Needs root (sysctls and `ip tcp_metrics flush`); without it the run goes on with the machine's
 * settings, and says so.
 */
const METRICS = '/proc/sys/net/ipv4/tcp_no_metrics_save';
const MEMORY = '/proc/sys/net/ipv4/tcp_mem';

export interface KernelTcp {
  /** Whether the metrics cache is off and empty for the run (false: no permission, and the report says so). */
  metricsCacheOff: boolean;
  /** tcp_mem for the run, in bytes (min, pressure, max), whether raised or the machine's own. */
  memory: number[];
  /** Whether `memory` is the raised one (false: no permission, or the machine's was higher already). */
  memoryRaised: boolean;
  /** Puts the machine's settings back (a SIGINT or SIGTERM before this does it too). */
  restore(): void;
}

export function kernelTcpForBench(): KernelTcp {
  const undo: (() => void)[] = [];
  const set = (path: string, value: string): boolean => {
    try {
      const before = readFileSync(path, 'utf8').trim();
      if (before !== value) {
        writeFileSync(path, value);
        undo.push(() => writeFileSync(path, before));
      }
      return true;
    } catch (err) {
      console.error(`bench: could not set ${path} (needs root): ${(err as Error).message}; the run keeps the machine's setting`);
      return false;
    }
  };
  let metricsCacheOff = set(METRICS, '1');
  if (metricsCacheOff) {
    try {
      execFileSync('ip', ['tcp_metrics', 'flush', 'all'], { stdio: 'ignore' });
    } catch (err) {
      console.error(`bench: could not flush the kernel's TCP metrics cache (needs iproute2): ${(err as Error).message}; steps after a collapse start from its figures`);
      metricsCacheOff = false;
    }
  }
  // tcp_mem counts pages: 4 KiB on x86, up to 64 KiB on arm64.
  const page = Number(execFileSync('getconf', ['PAGESIZE'], { encoding: 'utf8' }));
  const machine = readFileSync(MEMORY, 'utf8').trim().split(/\s+/).map(Number);
  const wanted = [1 / 3, 1 / 2, 2 / 3].map((share) => Math.floor((totalmem() * share) / page));
  const memoryRaised = wanted[1]! > machine[1]! && set(MEMORY, wanted.join(' '));
  const memory = (memoryRaised ? wanted : machine).map((pages) => pages * page);

  // Stopped by a signal (Ctrl-C, `timeout`), the bench puts the settings back before it dies of it.
  const onSignal = (signal: NodeJS.Signals): void => {
    restore();
    process.kill(process.pid, signal);
  };
  const restore = (): void => {
    process.off('SIGINT', onSignal).off('SIGTERM', onSignal);
    for (const step of undo.splice(0).reverse()) step();
  };
  process.once('SIGINT', onSignal).once('SIGTERM', onSignal);
  return { metricsCacheOff, memory, memoryRaised, restore };
}
