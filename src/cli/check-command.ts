import { readFileSync } from 'node:fs';
import { parseDocument } from 'yaml';
import { JWT_SECRET_ENV, loadProxyConfig } from '../config/proxy-config.js';
import { loadRoutesConfig } from '../config/routes-config.js';

/**
 * `livemux check FILE`: validates a routes file (it has a `routes:` list) or a proxy config file and
 * prints every problem with file:line:col; exit 1 when invalid. Starts nothing.
 */
export async function runCheckCommand(argv: string[]): Promise<number> {
  const file = argv[0];
  if (!file) {
    process.stderr.write('livemux check: name a file, e.g. livemux check routes.yaml\n');
    return 2;
  }
  const doc = parseDocument(readFileSync(file, 'utf8'));
  const isRoutes = Array.isArray((doc.toJS() as { routes?: unknown } | null)?.routes);
  if (isRoutes) loadRoutesConfig(file);
  // Deployments usually pass the secret through the environment at run time, so its absence here is
  // not a problem of the file being checked.
  else loadProxyConfig(file, { ...process.env, [JWT_SECRET_ENV]: process.env[JWT_SECRET_ENV] ?? 'checked-at-run-time' });
  console.log(`${file}: ok`);
  return 0;
}
