import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * The files `livemux up` leaves in `.livemux/` of the directory it runs in, for the other commands run
 * there: the dev JWT secret (so `livemux token` mints tokens the running proxy accepts, and tokens
 * survive a restart), a ready token for the examples and `livemux client`, and the push API's dev key.
 * Owner-only (0600).
 */
const DEV_DIR = '.livemux';
const SECRET_FILE = 'dev-secret';
const TOKEN_FILE = 'dev-token';
const PUSH_KEY_FILE = 'push-api-key';

/** Where `livemux up` keeps its dev secret, as the commands print it. */
export const DEV_SECRET_PATH = join(DEV_DIR, SECRET_FILE);
/** Where `livemux up` writes the dev user's token. */
export const DEV_TOKEN_PATH = join(DEV_DIR, TOKEN_FILE);
/** Where `livemux up` keeps the push API's dev key (docs/push.md). */
export const PUSH_API_KEY_PATH = join(DEV_DIR, PUSH_KEY_FILE);

/** The dev secret of `cwd`, created (32 random bytes) on first use. */
export function ensureDevSecret(cwd: string): string {
  const existing = readDevFile(cwd, SECRET_FILE);
  if (existing) return existing;
  const secret = randomBytes(32).toString('base64url');
  writeDevFile(cwd, SECRET_FILE, secret);
  return secret;
}

/** The push API's dev key of `cwd`, created on first use (kept, so scripts calling the API survive a restart). */
export function ensurePushApiKey(cwd: string): string {
  const existing = readDevFile(cwd, PUSH_KEY_FILE);
  if (existing) return existing;
  const key = `dev-${randomBytes(24).toString('base64url')}`;
  writeDevFile(cwd, PUSH_KEY_FILE, key);
  return key;
}

/** The dev secret of `cwd`, or undefined when `livemux up` never ran there. */
export function readDevSecret(cwd: string): string | undefined {
  return readDevFile(cwd, SECRET_FILE);
}

/** The dev user's token in `cwd`, or undefined when there is none. */
export function readDevToken(cwd: string): string | undefined {
  return readDevFile(cwd, TOKEN_FILE);
}

export function writeDevToken(cwd: string, token: string): void {
  writeDevFile(cwd, TOKEN_FILE, token);
}

function readDevFile(cwd: string, name: string): string | undefined {
  try {
    return readFileSync(join(cwd, DEV_DIR, name), 'utf8').trim() || undefined;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

function writeDevFile(cwd: string, name: string, text: string): void {
  mkdirSync(join(cwd, DEV_DIR), { recursive: true, mode: 0o700 });
  writeFileSync(join(cwd, DEV_DIR, name), `${text}\n`, { mode: 0o600 });
}
