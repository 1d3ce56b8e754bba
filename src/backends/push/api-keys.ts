import { hash } from 'node:crypto';

/** One API key as configured: the secret itself never leaves this module, `name` stands for it in logs. */
export interface ApiKeySpec {
  /** Label used in logs, metrics and push records instead of the key. */
  readonly name: string;
  /** The secret a business server sends as `Authorization: Bearer <key>`. */
  readonly key: string;
  /** Calls per second this key may make, over all nodes sharing a store. */
  readonly rate: number;
  /** Calls it may make at once after a quiet period (default: one second's worth, at least 1). */
  readonly burst: number;
}

/** An authenticated caller: its key's name and allowance. */
export interface ApiCaller {
  readonly name: string;
  readonly rate: number;
  readonly burst: number;
}

/**
 * The configured API keys. Keys are held here only as SHA-256 digests, and a presented key is looked up
 * by its digest: the comparison never runs over the secret byte by byte, so its timing says nothing
 * about a configured key; callers get the key's name, never the key, to log.
 */
export class ApiKeys {
  private readonly byDigest = new Map<string, ApiCaller>();

  constructor(specs: readonly ApiKeySpec[]) {
    for (const spec of specs) {
      this.byDigest.set(digest(spec.key), { name: spec.name, rate: spec.rate, burst: spec.burst });
    }
  }

  get size(): number {
    return this.byDigest.size;
  }

  /** The caller of an `Authorization` header value, or null (missing, not Bearer, unknown key). */
  authenticate(authorization: string | undefined): ApiCaller | null {
    if (authorization === undefined) return null;
    const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(authorization);
    return match === null ? null : (this.byDigest.get(digest(match[1]!)) ?? null);
  }
}

/** One-shot (no Hash object per call): every API call is authenticated. */
function digest(key: string): string {
  return hash('sha256', key, 'base64');
}
