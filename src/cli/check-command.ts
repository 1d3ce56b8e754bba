import type { Command } from '@commander-js/extra-typings';
import { parseDocument } from 'yaml';
import { readConfigFile } from '../config/load-yaml.js';
import { JWT_SECRET_ENV, loadProxyConfig } from '../config/proxy-config.js';
import { loadRoutesConfig } from '../config/routes-config.js';
import type { CliContext } from './command.js';

/**
 * `livemux check FILE`: validates a routes file (it has a `routes:` list) or a proxy config file and
 * prints every problem with file:line:col; exit 1 when invalid. Starts nothing.
 */
export function register(program: Command, cli: CliContext): void {
  program
    .command('check')
    .description('validate a livemux.yaml or routes.yaml without starting anything; exit 1 when invalid')
    .argument('<file>', 'the file to check (a routes file is recognised by its `routes:` list)')
    .action((file) => {
      const doc = parseDocument(readConfigFile(file));
      const isRoutes = Array.isArray((doc.toJS() as { routes?: unknown } | null)?.routes);
      if (isRoutes) loadRoutesConfig(file);
      // Deployments usually pass the secret through the environment at run time, so its absence here is
      // not a problem of the file being checked.
      else loadProxyConfig(file, { ...cli.env, [JWT_SECRET_ENV]: cli.env[JWT_SECRET_ENV] ?? 'checked-at-run-time' });
      cli.stdout.write(`${file}: ok\n`);
    });
}
