import { type Browser, chromium } from 'playwright-core';

/** Debian's chromium (.ci/run installs it), or CHROMIUM_PATH; nothing here ever downloads a browser. */
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/**
 * Headless Debian chromium driven by playwright-core. The flags keep it off the network (this machine
 * refuses everything but loopback, and chromium's background services would retry in a loop);
 * playwright gives each launch a fresh temporary profile.
 */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}
