import { execFileSync } from 'node:child_process';
import { get } from 'node:http';

/**
 * The value of the first sample of metric `name` on an admin port's /metrics whose labels contain
 * `labels` (e.g. `priority="low"`); 0 when there is none yet (prom-client omits untouched label sets).
 */
export async function metricValue(adminPort: number, name: string, labels = ''): Promise<number> {
  const text = await scrape(adminPort);
  const line = text.split('\n').find((l) => (l.startsWith(`${name}{`) || l.startsWith(`${name} `)) && l.includes(labels));
  return line ? Number(line.split(' ').at(-1)) : 0;
}

/**
 * GET `path` on an admin port, over a connection of its own: the body, rejected unless 200. fetch()
 * would reuse a kept-alive connection from an earlier call, and on a busy machine the server's idle
 * timeout (5 s) can close it just as the request goes out ("other side closed", seen once under two CPU
 * hogs); Prometheus retries such a scrape, fetch does not.
 */
export async function adminGet(adminPort: number, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    get({ host: '127.0.0.1', port: adminPort, path, agent: false }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        reject(new Error(`GET ${path} on port ${adminPort}: HTTP ${res.statusCode}`));
        return;
      }
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve(body));
      res.on('error', reject);
    }).on('error', reject);
  });
}

/** The /metrics page of an admin port (see adminGet). */
export const scrape = (adminPort: number): Promise<string> => adminGet(adminPort, '/metrics');

/** The /status document of an admin port (see adminGet); its fields are the process's own. */
export async function adminStatus<T = Record<string, unknown>>(adminPort: number): Promise<T> {
  return JSON.parse(await adminGet(adminPort, '/status')) as T;
}

/** `promtool check metrics` on `text`: its complaints, '' when there are none. */
export function promtoolCheckMetrics(text: string): string {
  try {
    execFileSync('promtool', ['check', 'metrics'], { input: text, stdio: 'pipe' });
    return '';
  } catch (err) {
    const e = err as { status?: number; stdout?: Buffer; stderr?: Buffer; code?: string };
    if (e.code === 'ENOENT') throw new Error('promtool not found: apt-get install prometheus (.ci/run does)');
    return `${e.stdout?.toString() ?? ''}${e.stderr?.toString() ?? ''}`.trim() || `exit ${e.status}`;
  }
}
