import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { PACKAGE_ROOT } from '../src/paths.js';

const SOURCES = join(PACKAGE_ROOT, 'bench', 'native');
const OUT = join(PACKAGE_ROOT, 'dist', 'bench', 'native');

/**
 * The bench's native helpers (bench/native/<name>.c), compiled with the system C compiler into
 * dist/bench/native/<name> when missing or older than their source or a header they share (bench/native/*.h). Without `cc`, gcc is installed from
 * Debian first (the bench runs as root on these machines); elsewhere the error says what to install.
 * Returns the executable's path.
 */
export function buildNative(name: string): string {
  const source = join(SOURCES, `${name}.c`);
  const binary = join(OUT, name);
  const headers = readdirSync(SOURCES).filter((f) => f.endsWith('.h'));
  if (modified(binary) >= Math.max(modified(source), ...headers.map((h) => modified(join(SOURCES, h))))) return binary;
  ensureCompiler();
  mkdirSync(OUT, { recursive: true });
  execFileSync('cc', ['-O2', '-Wall', '-Wextra', '-o', binary, source, '-lm'], { stdio: 'inherit' });
  return binary;
}

function modified(path: string): number {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return -1;
  }
}

function ensureCompiler(): void {
  if (onPath('cc')) return;
  if (!onPath('apt-get') || process.getuid?.() !== 0) {
    throw new Error('bench: the broadcast and IM benches build native helpers and need a C compiler: install gcc (Debian: apt-get install gcc)');
  }
  console.error('bench: no C compiler; installing gcc from Debian');
  execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit' });
  execFileSync('apt-get', ['install', '-y', '-qq', 'gcc', 'libc6-dev'], { stdio: 'inherit' });
}

function onPath(command: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
