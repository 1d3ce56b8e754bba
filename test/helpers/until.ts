/**
 * Polls `probe` every 50 ms until it is true; throws naming `what` after `timeoutMs`. Tests wait on
 * what they need this way, bounded, never on a fixed sleep: logs and metrics land a turn or a process
 * hop after the traffic that causes them, later on a busy machine.
 */
export async function until(probe: () => boolean | Promise<boolean>, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
