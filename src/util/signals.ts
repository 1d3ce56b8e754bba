/**
 * Resolves on the first SIGTERM or SIGINT; a second one exits at once (an operator who presses Ctrl-C
 * twice does not want to wait for the drain). Kept apart so a backend process can use it without
 * loading the proxy.
 */
export function untilSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const onSignal = (signal: NodeJS.Signals): void => {
      process.once('SIGTERM', () => process.exit(1));
      process.once('SIGINT', () => process.exit(1));
      resolve(signal);
    };
    process.once('SIGTERM', onSignal);
    process.once('SIGINT', onSignal);
  });
}
