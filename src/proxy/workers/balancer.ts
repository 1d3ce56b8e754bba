/** What the primary knows of one worker when it places a connection. */
export interface WorkerLoad {
  /** Connections the worker reported in its last load report. */
  reported: number;
  /** Sockets the worker had received when it reported. */
  receivedAtReport: number;
  /** Sockets handed to the worker so far. */
  handed: number;
  /** Takes connections: started, not draining, not gone. */
  accepting: boolean;
}

/**
 * Least connections: the accepting worker with the fewest connections, counting the sockets handed to
 * it since its last report (so a burst of accepts between two reports spreads instead of piling onto
 * the worker that reported least). Ties go to the lowest slot. -1 when no worker accepts.
 *
 * Why not node:cluster's own scheduling (measured, BENCHMARKS.md scale section): the shared-handle
 * mode leaves the kernel to pick, which on Linux piles connections onto a few processes (the busiest
 * held 2-2.5× its share with 8 workers), past the per-process file limit at 100k connections; the
 * round-robin mode spreads new connections evenly but knows nothing of the ones that stay, so a
 * replaced worker never catches up with the others. Connections here live for hours: balance what is
 * open, not what arrives.
 */
export function leastConnections(workers: readonly WorkerLoad[]): number {
  let best = -1;
  let bestLoad = Infinity;
  for (let i = 0; i < workers.length; i++) {
    const w = workers[i]!;
    if (!w.accepting) continue;
    const load = w.reported + (w.handed - w.receivedAtReport);
    if (load < bestLoad) {
      best = i;
      bestLoad = load;
    }
  }
  return best;
}
