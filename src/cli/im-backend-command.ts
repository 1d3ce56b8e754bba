import type { Command } from '@commander-js/extra-typings';
import { integer, logLevelOption, port, positiveNumber, type CliContext } from './command.js';

/** Below this, renewing sessions every third of the TTL would compete with the traffic for the store. */
const MIN_PRESENCE_TTL_MS = 300;

/** `livemux im-backend`: the reference IM backend (docs/im.md, src/backends/im). */
export function register(program: Command, _cli: CliContext): void {
  program
    .command('im-backend')
    .description('run the IM backend (docs/im.md); conversations and inboxes in memory unless --redis')
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--port <port>', 'port to listen on (0: any free port)', port(), 7104)
    .option('--redis <url>', 'keep conversations and inboxes in Redis (one primary, e.g. redis://127.0.0.1:6379), shared by every IM backend')
    .option('--send-rate <n>', 'messages/s a user may send (burst: two seconds worth; default 20)', positiveNumber('messages/s'))
    .option('--max-body <bytes>', 'largest message body (default 16384); sessions whose max_payload cannot carry one message of it are refused', integer(1, 'bytes'))
    .option('--inbox-max <n>', 'inbox entries kept per user (default 1000)', integer(1, 'entries'))
    .option('--inbox-max-age-ms <ms>', 'inbox entries kept at most this long (default 7 days)', integer(1, 'ms'))
    .option('--history-max <n>', 'messages kept per conversation (default 10000)', integer(1, 'messages'))
    .option('--recall-window-ms <ms>', 'how long after sending a message may be recalled (default 120000)', integer(0, 'ms'))
    .option('--presence-ttl-ms <ms>', 'a session not renewed for this long counts offline (default 30000)', integer(MIN_PRESENCE_TTL_MS, 'ms'))
    .option('--admin-host <host>', 'admin HTTP address', '127.0.0.1')
    .option('--admin-port <port>', 'serve /metrics, /healthz, /readyz, /status on this port (0: any free port)', port())
    .addOption(logLevelOption())
    .addHelpText('after', '\nPrints {"event":"listening","port":N[,"adminPort":M]} on stdout once it accepts proxy streams; logs go to stderr.')
    .action(async (opts) => {
      const { runImBackend } = await import('../backends/im/main.js');
      await runImBackend({
        host: opts.host,
        port: opts.port,
        adminHost: opts.adminHost,
        adminPort: opts.adminPort,
        redis: opts.redis,
        sendRate: opts.sendRate,
        maxBodyBytes: opts.maxBody,
        inboxMax: opts.inboxMax,
        inboxMaxAgeMs: opts.inboxMaxAgeMs,
        historyMax: opts.historyMax,
        recallWindowMs: opts.recallWindowMs,
        presenceTtlMs: opts.presenceTtlMs,
        logLevel: opts.logLevel,
      });
    });
}
