import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The package root, found by walking up from this module: the same code runs from `src/` under
 * vitest and from `dist/src/` when built, at different depths.
 */
function findPackageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'proto'))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error('livemux: cannot find the package root (no proto/ folder above this module)');
    dir = parent;
  }
  return dir;
}

/** Absolute path of the livemux package root. */
export const PACKAGE_ROOT = findPackageRoot();

/** Absolute path of a file under `proto/`. */
export function protoPath(relative: string): string {
  return join(PACKAGE_ROOT, 'proto', relative);
}
