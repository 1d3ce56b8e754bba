import { afterAll, beforeAll } from 'vitest';
import { type EchoStack, type RunningProcess, startChatBackend, startEchoStack } from './processes.js';

/** Everything livemux has that Prometheus scrapes: an echo stack's proxy and a Chat backend with its admin port. */
export interface ScrapeTargets {
  readonly stack: EchoStack;
  readonly chat: RunningProcess & { adminPort: number };
  stop(): Promise<void>;
}

export async function startScrapeTargets(): Promise<ScrapeTargets> {
  const stack = await startEchoStack();
  const chat = await startChatBackend(['--admin-port', '0']);
  return {
    stack,
    chat: chat as RunningProcess & { adminPort: number },
    async stop() {
      await stack.stop();
      await chat.stop();
    },
  };
}

/**
 * Starts the targets before the calling file's tests and stops them after all of them. The returned
 * object is filled in by then: read its fields inside tests, not at load time.
 */
export function scrapeTargetsForFile(): { stack: EchoStack; chat: ScrapeTargets['chat'] } {
  const current = {} as { stack: EchoStack; chat: ScrapeTargets['chat'] };
  let targets: ScrapeTargets | undefined;
  beforeAll(async () => {
    targets = await startScrapeTargets();
    Object.assign(current, { stack: targets.stack, chat: targets.chat });
  });
  afterAll(() => targets?.stop());
  return current;
}
