import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { type LivemuxClient, connect } from '../../src/client/index.js';
import { type RunningProcess, startEchoBackend, startProxy, testToken } from '../helpers/processes.js';

// How operators change routes: `livemux check` in CI, SIGHUP when watching is off, and a Kubernetes
// ConfigMap update (an atomic swap of the `..data` symlink the mounted file points through).
let backend: RunningProcess & { port: number };
const proxies: RunningProcess[] = [];
const clients: LivemuxClient[] = [];
const BIN = join(import.meta.dirname, '..', '..', 'bin', 'livemux.js');

const routes = (...businesses: string[]): string =>
  stringify({
    version: 1,
    routes: businesses.map((business) => ({ business, pool: 'echo' })),
    pools: { echo: { protocol: 'grpc', endpoints: [{ address: `127.0.0.1:${backend.port}` }] } },
  });

async function client(port: number): Promise<LivemuxClient> {
  const c = await connect({ host: '127.0.0.1', port, token: await testToken(), reconnect: false });
  clients.push(c);
  return c;
}

async function opens(c: LivemuxClient, business: string): Promise<boolean> {
  return c.open(business).then(
    () => true,
    () => false,
  );
}

async function until(probe: () => Promise<boolean>, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

beforeAll(async () => {
  backend = await startEchoBackend();
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await Promise.all(proxies.map((p) => p.stop()));
  await backend?.stop();
});

describe('livemux check', () => {
  const check = (file: string): { status: number | null; out: string } => {
    const r = spawnSync(process.execPath, [BIN, 'check', file], { encoding: 'utf8' });
    return { status: r.status, out: r.stdout + r.stderr };
  };

  it('accepts a valid routes file and exits 0', () => {
    const dir = mkdtempSync(join(tmpdir(), 'livemux-check-'));
    writeFileSync(join(dir, 'routes.yaml'), routes('chat'));
    expect(check(join(dir, 'routes.yaml'))).toMatchObject({ status: 0, out: expect.stringContaining('routes.yaml: ok') });
  });

  it('lists every problem of an invalid file with file:line:col and exits 1', () => {
    const dir = mkdtempSync(join(tmpdir(), 'livemux-check-'));
    const file = join(dir, 'routes.yaml');
    writeFileSync(
      file,
      ['version: 1', 'routes:', '  - business: chat', '    pool: nowhere', '    policy: rr', 'pools: {}', ''].join('\n'),
    );
    const { status, out } = check(file);
    expect(status).toBe(1);
    expect(out).toContain(`${file}:4:11 routes[0].pool: unknown pool "nowhere"`);
    expect(out).toMatch(new RegExp(`${file}:5:13 routes\\[0\\]\\.policy: expected one of .*got "rr"`));
  });
});

describe('reload triggers', () => {
  it('with routes_watch off, a change applies on SIGHUP and not before', async () => {
    const proxy = await startProxy({ backends: [`127.0.0.1:${backend.port}`], config: { routes_watch: false } });
    proxies.push(proxy);
    const c = await client(proxy.port);
    writeFileSync(join(proxy.dir, 'routes.yaml'), routes('echo', 'later'));
    await new Promise((r) => setTimeout(r, 500));
    expect(await opens(c, 'later')).toBe(false);
    proxy.child.kill('SIGHUP');
    await until(() => opens(c, 'later'), 'the SIGHUP reload');
    await proxy.waitFor((l) => l.msg === 'routes reloaded' && l.trigger === 'signal');
  });

  it('follows a Kubernetes-style ..data symlink swap', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'livemux-k8s-'));
    const version = (name: string, content: string): void => {
      mkdirSync(join(dir, name));
      writeFileSync(join(dir, name, 'routes.yaml'), content);
    };
    version('..v1', routes('echo'));
    symlinkSync('..v1', join(dir, '..data'));
    symlinkSync(join('..data', 'routes.yaml'), join(dir, 'routes.yaml'));
    const proxy = await startProxy({
      backends: [`127.0.0.1:${backend.port}`],
      config: { routes: join(dir, 'routes.yaml') },
    });
    proxies.push(proxy);
    const c = await client(proxy.port);
    expect(await opens(c, 'news')).toBe(false);
    // What the kubelet does: write the new version, point a temporary link at it, rename it over ..data.
    version('..v2', routes('echo', 'news'));
    symlinkSync('..v2', join(dir, '..data_tmp'));
    renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
    await until(() => opens(c, 'news'), 'the swapped config');
  });
});
