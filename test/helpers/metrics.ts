import { execFileSync } from 'node:child_process';

/**
 * The value of the first sample of metric `name` on an admin port's /metrics whose labels contain
 * `labels` (e.g. `priority="low"`); 0 when there is none yet (prom-client omits untouched label sets).
 */
export async function metricValue(adminPort: number, name: string, labels = ''): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
  const line = text.split('\n').find((l) => (l.startsWith(`${name}{`) || l.startsWith(`${name} `)) && l.includes(labels));
  return line ? Number(line.split(' ').at(-1)) : 0;
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
