/** Why a long-running process stops: a signal, or its parent's IPC channel closing. */
export type StopReason = NodeJS.Signals | 'parent-gone';

/**
 * Resolves on the first SIGTERM or SIGINT; a second one exits at once (an operator who presses Ctrl-C
 * twice does not want to wait for the drain). A process forked with an IPC channel (the backends
 * `livemux up` starts, the workers of `livemux start --workers`) also stops when that channel closes:
 * its parent is gone, and a parent killed with SIGKILL can send no signal, so without this its children
 * would keep their ports and run on with no one to stop them. Kept apart so a backend process can use
 * it without loading the proxy.
 */
export function untilStop(): Promise<StopReason> {
  return new Promise((resolve) => {
    const stop = (reason: StopReason): void => {
      process.off('SIGTERM', stop);
      process.off('SIGINT', stop);
      // A 'disconnect' listener holds the IPC channel, and with it the process, alive.
      process.off('disconnect', parentGone);
      process.once('SIGTERM', () => process.exit(1));
      process.once('SIGINT', () => process.exit(1));
      resolve(reason);
    };
    const parentGone = (): void => stop('parent-gone');
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
    if (process.channel !== undefined) process.on('disconnect', parentGone);
  });
}
