/**
 * `livemux/client` is the SDK alone: an app that only talks to a proxy imports it without loading the
 * proxy's and backends' dependencies. Colleagues add typed business clients under src/client; this
 * fails the moment one of them pulls in gRPC, Redis, logging or metrics. Runs the built package
 * (`npm test` builds first) in a fresh Node process, importing it by name as an app would.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..', '..');
const SERVER_ONLY = ['@grpc/grpc-js', '@grpc/proto-loader', 'ioredis', 'pino', 'prom-client', 'opossum', 'chokidar', 'yaml', 'zod', 'jose'];

/** The npm packages a fresh process has loaded after `import(specifier)`, and what the import exported. */
function loadedBy(specifier: string): { packages: string[]; exports: string[] } {
  const script = `
    import { createRequire } from 'node:module';
    const mod = await import(${JSON.stringify(specifier)});
    // CommonJS packages (grpc-js, ioredis, pino, prom-client, opossum) land in the require cache even
    // when imported from ESM; ESM-only ones (chokidar) are caught by the static walk below.
    const files = Object.keys(createRequire(import.meta.url).cache);
    console.log(JSON.stringify({ files, exports: Object.keys(mod) }));`;
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT, encoding: 'utf8' });
  const { files, exports } = JSON.parse(out) as { files: string[]; exports: string[] };
  const packages = new Set<string>();
  for (const file of files) {
    const after = file.split('/node_modules/').at(-1);
    if (after === undefined || after === file) continue;
    const parts = after.split('/');
    packages.add(parts[0]!.startsWith('@') ? `${parts[0]}/${parts[1]}` : parts[0]!);
  }
  return { packages: [...packages].sort(), exports };
}

/**
 * Every bare specifier the built module graph from `entry` names, static imports, re-exports and
 * dynamic import() alike (one that is never taken still counts: it is one call away).
 */
function bareSpecifiers(entry: string): Set<string> {
  const bare = new Set<string>();
  const seen = new Set<string>();
  const walk = (file: string): void => {
    if (seen.has(file)) return;
    seen.add(file);
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*|^import\s+)['"]([^'"]+)['"]/gm)) {
      const spec = m[1]!;
      if (spec.startsWith('.')) walk(resolve(dirname(file), spec));
      else if (!spec.startsWith('node:')) bare.add(spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!);
    }
  };
  walk(entry);
  return bare;
}

describe("import('livemux/client')", () => {
  it('names none of the server-side dependencies anywhere in its module graph', () => {
    const client = bareSpecifiers(join(ROOT, 'dist', 'src', 'client', 'index.js'));
    expect([...client].filter((name) => SERVER_ONLY.includes(name))).toEqual([]);
    // The walk sees what the whole package names, so it can fail.
    expect([...bareSpecifiers(join(ROOT, 'dist', 'src', 'index.js'))]).toEqual(expect.arrayContaining(['@grpc/grpc-js', 'chokidar', 'pino']));
  });

  it('loads none of the server-side dependencies', () => {
    const { packages, exports } = loadedBy('livemux/client');
    expect(exports).toEqual(expect.arrayContaining(['connect', 'LivemuxClient', 'ClientSession', 'Code', 'LivemuxError']));
    for (const name of SERVER_ONLY) expect(packages, name).not.toContain(name);
  });

  it('the whole package still loads them (so the check above can fail)', () => {
    const { packages } = loadedBy('livemux');
    expect(packages).toEqual(expect.arrayContaining(['@grpc/grpc-js', 'ioredis', 'pino']));
  });
});
