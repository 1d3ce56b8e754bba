/**
 * deploy/ checked as far as this machine can: there is no container engine here (the docker client
 * only), so the image is not built and the compose file not run. What is checked instead:
 * - the alert rules and Prometheus config pass `promtool check rules|config`;
 * - every metric the rules and the Grafana dashboard query is exported by a live proxy or Chat backend
 *   (their /metrics scraped here), so neither refers to a name that does not exist;
 * - the Dockerfile passes dockerfile-utils' validation and every file it copies exists;
 * - compose's livemux services run real subcommands with options those commands take, its mounted
 *   files exist, and the config files it mounts pass `livemux check`;
 * - the systemd unit passes `systemd-analyze verify`.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { validate } from 'dockerfile-utils';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { runCliCaptured } from '../helpers/cli.js';
import { scrape } from '../helpers/metrics.js';
import { scrapeTargetsForFile } from '../helpers/scrape-targets.js';

const ROOT = join(import.meta.dirname, '..', '..');
const DEPLOY = join(ROOT, 'deploy');
const read = (path: string): string => readFileSync(join(DEPLOY, path), 'utf8');

const live = scrapeTargetsForFile();

/** Every sample name a /metrics page can carry: each family's name, and for histograms its series. */
async function exportedNames(): Promise<Set<string>> {
  const names = new Set<string>(['up']); // Prometheus adds `up` to every target
  for (const port of [live.stack.proxy.adminPort, live.chat.adminPort]) {
    const text = await scrape(port);
    for (const [, name, type] of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
      names.add(name!);
      if (type === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) names.add(`${name}${suffix}`);
    }
  }
  return names;
}

/** Metric names a PromQL expression refers to (livemux_* and up). */
const referenced = (expr: string): string[] => [...expr.matchAll(/\b(livemux_[a-z0-9_]+|up)\b(?=\s*[{[)\s/=<>!*+-]|$)/g)].map((m) => m[1]!);

function promtool(...args: string[]): { status: number | null; output: string } {
  const run = spawnSync('promtool', args, { cwd: join(DEPLOY, 'prometheus'), encoding: 'utf8' });
  if (run.error) throw new Error(`promtool: ${run.error.message} (apt-get install prometheus; .ci/run does)`);
  return { status: run.status, output: `${run.stdout}${run.stderr}` };
}

describe('Prometheus rules and config', () => {
  it('pass promtool check rules and check config', () => {
    const rules = promtool('check', 'rules', 'alerts.yml');
    expect(rules.status, rules.output).toBe(0);
    expect(rules.output).toMatch(/SUCCESS: \d+ rules found/);
    const config = promtool('check', 'config', 'prometheus.yml');
    expect(config.status, config.output).toBe(0);
  });

  it('every alert queries metrics that a live proxy or Chat backend exports', async () => {
    const exported = await exportedNames();
    const groups = (parse(read('prometheus/alerts.yml')) as { groups: { rules: { alert: string; expr: string }[] }[] }).groups;
    const rules = groups.flatMap((g) => g.rules);
    expect(rules.length).toBeGreaterThanOrEqual(10);
    for (const rule of rules) {
      const names = referenced(rule.expr);
      expect(names.length, rule.alert).toBeGreaterThan(0);
      expect(names.filter((n) => !exported.has(n)), rule.alert).toEqual([]);
    }
  });

  it('the name check can fail', async () => {
    const exported = await exportedNames();
    expect(referenced('rate(livemux_no_such_thing_total[5m]) > 0').filter((n) => !exported.has(n))).toEqual(['livemux_no_such_thing_total']);
  });
});

describe('Grafana dashboard', () => {
  it('is provisioned from deploy/grafana and queries only exported metrics', async () => {
    const exported = await exportedNames();
    const dashboard = JSON.parse(read('grafana/dashboards/livemux.json')) as { uid: string; panels: { title: string; datasource: { uid: string }; targets: { expr: string }[] }[] };
    expect(dashboard.uid).toBe('livemux');
    const datasource = (parse(read('grafana/provisioning/datasources/prometheus.yml')) as { datasources: { uid: string }[] }).datasources[0]!.uid;
    const provider = parse(read('grafana/provisioning/dashboards/livemux.yml')) as { providers: { options: { path: string } }[] };
    expect(provider.providers[0]!.options.path).toBe('/var/lib/grafana/dashboards');
    expect(dashboard.panels.length).toBeGreaterThanOrEqual(15);
    for (const panel of dashboard.panels) {
      expect(panel.datasource.uid, panel.title).toBe(datasource);
      expect(panel.targets.length, panel.title).toBeGreaterThan(0);
      for (const { expr } of panel.targets) {
        const names = referenced(expr);
        expect(names.length, `${panel.title}: ${expr}`).toBeGreaterThan(0);
        expect(names.filter((n) => !exported.has(n)), `${panel.title}: ${expr}`).toEqual([]);
      }
    }
    // Histograms appear as latency panels: each histogram the proxy exports is on the dashboard.
    const queried = dashboard.panels.flatMap((p) => p.targets.map((t) => t.expr)).join('\n');
    for (const h of ['session_open_duration', 'outbound_queue_wait', 'fanout_delay', 'backend_round_trip', 'route_reload_duration']) {
      expect(queried).toContain(`livemux_${h}_seconds_bucket`);
    }
  });
});

describe('container image and compose file', () => {
  it('the Dockerfile validates and copies only files that exist', () => {
    const dockerfile = read('Dockerfile');
    expect(validate(dockerfile)).toEqual([]);
    for (const line of dockerfile.split('\n').filter((l) => l.startsWith('COPY ') && !l.includes('--from'))) {
      const sources = line.split(/\s+/).slice(1, -1);
      for (const source of sources) expect(existsSync(join(ROOT, source)), line).toBe(true);
    }
  });

  it('compose runs real livemux commands with options they take, and mounts files that exist and check ok', async () => {
    const compose = parse(read('compose.yaml'), { merge: true }) as { services: Record<string, { image?: string; command?: string[]; volumes?: string[] }> };
    const livemux = Object.entries(compose.services).filter(([, s]) => s.image === 'livemux:dev');
    expect(livemux.map(([name]) => name).sort()).toEqual(['chat-1', 'chat-2', 'echo', 'proxy']);
    for (const [name, service] of livemux) {
      const [command, ...args] = service.command!;
      const help = await runCliCaptured([command!, '--help']);
      expect(help.code, `${name}: livemux ${command}`).toBe(0);
      for (const option of args.filter((a) => a.startsWith('--'))) expect(help.stdout, `${name}: ${option}`).toContain(`${option} `);
    }
    for (const service of Object.values(compose.services)) {
      for (const volume of service.volumes ?? []) {
        const host = volume.split(':')[0]!;
        expect(existsSync(join(DEPLOY, host)), volume).toBe(true);
      }
    }
    for (const file of ['livemux.yaml', 'routes.yaml']) {
      const check = await runCliCaptured(['check', join(DEPLOY, file)]);
      expect(check, file).toMatchObject({ code: 0 });
    }
  });
});

describe('systemd unit', () => {
  it('passes systemd-analyze verify', () => {
    // verify wants ExecStart's binary to exist: point it at this checkout's bin/livemux.js.
    const dir = mkdtempSync(join(tmpdir(), 'livemux-unit-'));
    const unit = read('systemd/livemux.service').replace('ExecStart=/usr/bin/livemux ', `ExecStart=${join(ROOT, 'bin', 'livemux.js')} `);
    writeFileSync(join(dir, 'livemux.service'), unit);
    const run = spawnSync('systemd-analyze', ['verify', join(dir, 'livemux.service')], { encoding: 'utf8' });
    if (run.error) throw new Error(`systemd-analyze: ${run.error.message} (Debian package systemd)`);
    expect(run.status, run.stderr).toBe(0);
    expect(run.stderr.trim()).toBe('');
    // Stopping waits longer than the drain it starts.
    const stop = Number(/TimeoutStopSec=(\d+)/.exec(unit)![1]);
    expect(stop * 1000).toBeGreaterThan(30_000);
    expect(unit).toContain('ExecReload=/bin/kill -HUP $MAINPID');
  });
});

