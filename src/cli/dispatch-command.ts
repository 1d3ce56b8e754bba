import type { Command } from '@commander-js/extra-typings';
import { integer, logLevelOption, port, type CliContext } from './command.js';

/** `livemux dispatch`: the HTTP service telling clients which proxies to dial (docs/dispatch.md). */
export function register(program: Command, _cli: CliContext): void {
  program
    .command('dispatch')
    .description('run the dispatch service: GET /v1/dispatch?cluster=NAME answers the healthy proxies, least loaded first')
    .requiredOption('--redis <url>', 'the Redis the proxies register in (their dispatch.redis), e.g. redis://127.0.0.1:6379')
    .option('--host <host>', 'address to listen on', '0.0.0.0')
    .option('--port <port>', 'port to listen on (0: any free port)', port(), 7080)
    .option('--limit <n>', 'addresses per answer unless the request asks for fewer (at most 100)', integer(1, 'addresses'), 5)
    .option('--max-lag-ms <ms>', 'proxies whose event loop lags more are listed after the others', integer(1, 'ms'), 500)
    .option('--refresh-ms <ms>', 'a cluster is read from Redis at most this often', integer(0, 'ms'), 1_000)
    .addOption(logLevelOption())
    .addHelpText('after', '\nLogs "dispatch listening" with its port once it serves. Several can run behind any HTTP load balancer.')
    .action(async (opts) => {
      const { startDispatchServer } = await import('../dispatch/dispatch-server.js');
      const { createLogger } = await import('../observability/logger.js');
      const { untilStop } = await import('../util/signals.js');
      const server = await startDispatchServer({
        host: opts.host,
        port: opts.port,
        redisUrl: opts.redis,
        limit: Math.min(opts.limit, 100),
        maxLagMs: opts.maxLagMs,
        refreshMs: opts.refreshMs,
        logger: createLogger({ level: opts.logLevel, name: 'dispatch' }),
      });
      await untilStop();
      await server.close();
    });
}
