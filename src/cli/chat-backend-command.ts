import { Option, type Command } from '@commander-js/extra-typings';
import { integer, logLevelOption, port, positiveNumber, type CliContext } from './command.js';

/** The write lease is renewed every third of its TTL, which must stay a whole millisecond. */
const MIN_LEASE_TTL_MS = 3;
/** Below this, renewing presences every third of the TTL would compete with the room traffic for the store. */
const MIN_PRESENCE_TTL_MS = 300;

/** `livemux chat-backend`: the reference Chat backend (docs/chat.md, src/backends/chat). */
export function register(program: Command, _cli: CliContext): void {
  program
    .command('chat-backend')
    .description('run the Chat backend (docs/chat.md); rooms in memory unless --redis')
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--port <port>', 'port to listen on (0: any free port)', port(), 7102)
    .option('--redis <url>', 'keep rooms in Redis (e.g. redis://127.0.0.1:6379), so another backend can take a room over')
    .option('--room-rate <n>', 'messages/s accepted per room', positiveNumber('messages/s'))
    .option('--user-rate <n>', 'messages/s accepted per user (burst: two seconds worth)', positiveNumber('messages/s'))
    .option('--lease-ttl-ms <ms>', 'room write-lease TTL', integer(MIN_LEASE_TTL_MS, 'ms'))
    .option('--presence-ttl-ms <ms>', 'member presence TTL', integer(MIN_PRESENCE_TTL_MS, 'ms'))
    .option('--buffer-system <n>', 'room buffer bound for system messages', integer(1, 'messages'))
    .option('--buffer-high <n>', 'room buffer bound for high-priority messages', integer(1, 'messages'))
    .option('--buffer-low <n>', 'room buffer bound for low-priority messages', integer(1, 'messages'))
    .option('--history-length <n>', 'messages of history each room retains (default 1000)', integer(1, 'messages'))
    .option('--words <a,b>', 'word filter list, comma-separated', (text) => text.split(',').filter((w) => w !== ''))
    .addOption(new Option('--word-mode <mode>', 'what the word filter does').choices(['reject', 'mask'] as const).default('reject' as const))
    .option('--admin-host <host>', 'admin HTTP address', '127.0.0.1')
    .option('--admin-port <port>', 'serve /metrics, /healthz, /readyz, /status on this port (0: any free port)', port())
    .addOption(logLevelOption())
    .addHelpText('after', '\nPrints {"event":"listening","port":N[,"adminPort":M]} on stdout once it accepts proxy streams; logs go to stderr.')
    .action(async (opts) => {
      const { runChatBackend } = await import('../backends/chat/main.js');
      await runChatBackend({
        host: opts.host,
        port: opts.port,
        adminHost: opts.adminHost,
        adminPort: opts.adminPort,
        redis: opts.redis,
        roomRate: opts.roomRate,
        userRate: opts.userRate,
        leaseTtlMs: opts.leaseTtlMs,
        presenceTtlMs: opts.presenceTtlMs,
        buffer: {
          ...(opts.bufferSystem === undefined ? {} : { system: opts.bufferSystem }),
          ...(opts.bufferHigh === undefined ? {} : { high: opts.bufferHigh }),
          ...(opts.bufferLow === undefined ? {} : { low: opts.bufferLow }),
        },
        historyLength: opts.historyLength,
        words: opts.words ?? [],
        wordMode: opts.wordMode,
        logLevel: opts.logLevel,
      });
    });
}
