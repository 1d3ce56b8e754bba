import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';

/**
 * The kernel's TCP metrics cache, off while a broadcast bench runs. When a connection closes, Linux
 * saves what it learned of the path (RTT and its variance, reordering, ssthresh) per destination
 * address, and every new connection to that address starts from it. Real receivers are phones, each
 * with its own address, so one receiver's losses never shape another's connection. The bench's 10,000
 * receivers share one loopback address, so a room that collapsed (hundreds of thousands of segments
 * retransmitted) hands its figures to every connection of the next room: after one such pass
 * (2026-12-03 22:09) the cache held, for 127.0.0.1, an RTT of 18 ms (loopback's is tens of µs) and a
 * reordering of 6 (3 by default: later fast retransmits, more timeouts). In that pass, cache on, the C
 * relay missed five steps in a row after its first collapse, down to 4,496 messages/s (kept later in
 * the pass), each on a new room; in the next two, cache off and flushed, it kept 5,120–6,089/s right
 * after the same collapse. It is not all that outlasts a collapse: the Node relay, cache off, still
 * missed four steps in a row after its own (22:44).
 *
 * Needs root (a sysctl and `ip tcp_metrics flush`); without it the run goes on with the cache as it
 * is, and says so.
 */
const SYSCTL = '/proc/sys/net/ipv4/tcp_no_metrics_save';

export interface TcpMetricsCache {
  /** Whether it is off and empty for the run (false: no permission, and the run's figures say so). */
  off: boolean;
  /** Puts the machine's setting back (a SIGINT or SIGTERM before this does it too). */
  restore(): void;
}

export function tcpMetricsCacheOff(): TcpMetricsCache {
  let before: string;
  try {
    before = readFileSync(SYSCTL, 'utf8').trim();
    if (before !== '1') writeFileSync(SYSCTL, '1');
    execFileSync('ip', ['tcp_metrics', 'flush', 'all'], { stdio: 'ignore' });
  } catch (err) {
    console.error(`bench: could not switch the kernel's TCP metrics cache off (needs root and iproute2): ${(err as Error).message}; steps after a collapse start from its figures`);
    return { off: false, restore: () => {} };
  }
  // Stopped by a signal (Ctrl-C, `timeout`), the bench puts the setting back before it dies of it.
  const onSignal = (signal: NodeJS.Signals): void => {
    restore();
    process.kill(process.pid, signal);
  };
  const restore = (): void => {
    process.off('SIGINT', onSignal).off('SIGTERM', onSignal);
    if (before !== '1') writeFileSync(SYSCTL, before);
  };
  process.once('SIGINT', onSignal).once('SIGTERM', onSignal);
  return { off: true, restore };
}
