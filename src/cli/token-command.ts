import type { Command } from '@commander-js/extra-typings';
import { JWT_SECRET_ENV } from '../config/proxy-config.js';
import { LivemuxError } from '../protocol/errors.js';
import { integer, keyValue, type CliContext } from './command.js';
import { DEV_SECRET_PATH, readDevSecret } from './dev-files.js';

const DAY_S = 86_400;

/**
 * `livemux token`: mints an HS256 token the proxy accepts, for development and tests. The secret is
 * --secret, else $LIVEMUX_JWT_SECRET, else the dev secret `livemux up` (npm start) keeps in this
 * directory, so tokens for any number of users and roles work against a running `npm start`.
 */
export function register(program: Command, cli: CliContext): void {
  program
    .command('token')
    .description('mint an HS256 token for a user (dev and tests); printed on stdout')
    .requiredOption('--sub <user>', 'the user id (`sub` claim)')
    .option('--role <role>', 'the `role` claim, e.g. host or admin for Chat moderation (docs/chat.md)')
    .option('--claim <key=value>', 'another string claim, forwarded to backends; repeatable', keyValue)
    .option('--ttl <seconds>', 'lifetime', integer(1, 'seconds'), DAY_S)
    .option('--issuer <iss>', 'the `iss` claim (when the proxy sets auth.issuer)')
    .option('--audience <aud>', 'the `aud` claim (when the proxy sets auth.audience)')
    .option('--secret <secret>', `signing secret (default: $${JWT_SECRET_ENV}, then ${DEV_SECRET_PATH} from \`livemux up\`)`)
    .addHelpText('after', '\nExample, a second user and a moderator for the README walkthrough, while `npm start` runs:\n  npx livemux token --sub bob\n  npx livemux token --sub carol --role host')
    .action(async (opts) => {
      const secret = opts.secret ?? cli.env[JWT_SECRET_ENV] ?? readDevSecret(cli.cwd);
      if (!secret) {
        throw new LivemuxError(
          'ERR_USAGE',
          `no secret: pass --secret, set ${JWT_SECRET_ENV} to the proxy's auth.jwt_secret, or run \`livemux up\` (npm start) in this directory first`,
        );
      }
      const { mintToken } = await import('../proxy/auth.js');
      const claims = { ...(opts.claim ?? {}), ...(opts.role === undefined ? {} : { role: opts.role }) };
      const token = await mintToken({
        secret,
        sub: opts.sub,
        ttlSeconds: opts.ttl,
        claims,
        ...(opts.issuer === undefined ? {} : { issuer: opts.issuer }),
        ...(opts.audience === undefined ? {} : { audience: opts.audience }),
      });
      cli.stdout.write(`${token}\n`);
    });
}
