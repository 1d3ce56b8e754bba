/**
 * The installed dependency tree stays single where it matters: one copy (so one major) of each library
 * that defines a wire format or is named by the product, so no message is encoded by one protobufjs and
 * decoded by another, and `npm ls` reports no invalid or missing package.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..', '..');
const SINGLE = ['protobufjs', '@grpc/grpc-js', 'prom-client', 'pino', 'yaml', 'zod', 'jose', 'ioredis', 'chokidar', 'opossum'];

/** Every installed copy of `name` under node_modules, nested ones included: their versions. */
function installedVersions(name: string, dir = join(ROOT, 'node_modules'), found: string[] = []): string[] {
  const own = join(dir, name, 'package.json');
  if (existsSync(own)) found.push((JSON.parse(readFileSync(own, 'utf8')) as { version: string }).version);
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (!entry.isDirectory() || entry.name.startsWith('.')) continue;
    const scopeOrPackage = join(dir, entry.name);
    const packages = entry.name.startsWith('@') ? readdirSync(scopeOrPackage).map((p) => join(scopeOrPackage, p)) : [scopeOrPackage];
    for (const pkg of packages) {
      const nested = join(pkg, 'node_modules');
      if (existsSync(nested)) installedVersions(name, nested, found);
    }
  }
  return found;
}

describe('dependency tree', () => {
  it.each(SINGLE)('%s is installed once', (name) => {
    expect(installedVersions(name)).toHaveLength(1);
  });

  it('npm ls finds nothing invalid, missing or extraneous', () => {
    // Throws (non-zero exit) on any problem; its output names the package.
    expect(() => execFileSync('npm', ['ls', '--all', '--silent'], { cwd: ROOT, stdio: 'pipe' })).not.toThrow();
  });
});
