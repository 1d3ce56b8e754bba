import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';

/**
 * The kernel's TCP metrics cache, off while a broadcast bench runs. When a connection closes, Linux
 * saves what it learned of the path (RTT and its variance, reordering, ssthresh) per destination
 * address, and every new connection to that address starts from it. Real receivers are phones, each
 * with its own address, so one receiver's losses never shape another's connection. The bench's 10,000
 * receivers share one loopback address: a room that fell far behind (hundreds of thousands of segments
 * retransmitted) leaves its bad path figures to every connection of the next room. With the cache on,
 * a C relay pass of 2026-12-03 22:09 missed five steps in a row after its first collapse, down to 4,496
 * messages/s (kept twice later in the pass), each on a new room, and peaked at 45 M deliveries/s; with
 * it off and flushed (22:19), the steps right after the same collapse kept 5,120, 5,583 and 6,089/s and
 * the pass peaked at 70.9 M.
 *
 * Needs root (a sysctl and `ip tcp_metrics flush`); without it the run goes on with the cache as it
 * is, and says so.
 */
const SYSCTL = '/proc/sys/net/ipv4/tcp_no_metrics_save';

export interface TcpMetricsCache {
  /** Whether it is off and empty for the run (false: no permission, and the run's figures say so). */
  off: boolean;
  /** Puts the machine's setting back. */
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
  return { off: true, restore: () => before !== '1' && writeFileSync(SYSCTL, before) };
}
