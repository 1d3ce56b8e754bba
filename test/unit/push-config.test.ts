import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadPushConfig } from '../../src/backends/push/push-config.js';
import { ConfigError } from '../../src/protocol/errors.js';

function file(text: string): string {
  const path = join(mkdtempSync(join(tmpdir(), 'livemux-push-config-')), 'push.yaml');
  writeFileSync(path, text);
  return path;
}

describe('push.yaml', () => {
  it('has a default for everything, and takes LIVEMUX_PUSH_API_KEY as the key "dev"', () => {
    const config = loadPushConfig(null, { LIVEMUX_PUSH_API_KEY: 'a-dev-key-of-some-length' });
    expect(config).toMatchObject({ listen: { host: '127.0.0.1', port: 7103 }, http: { host: '127.0.0.1', port: 7180 }, admin: null, redis: null });
    expect(config.apiKeys).toEqual([{ name: 'dev', key: 'a-dev-key-of-some-length', rate: 1000, burst: 1000 }]);
    expect(config.limits.maxDataBytes).toBe(4096);
    expect(loadPushConfig(null, {}).apiKeys).toEqual([]);
  });

  it('reads keys from the environment or the file, each with its rate', () => {
    const path = file(['api_keys:', '  - { name: billing, key_env: BILLING_KEY, rate: 50 }', '  - { name: ops, key: literal-key-0123456789, rate: 2, burst: 5 }', 'http: null'].join('\n'));
    const config = loadPushConfig(path, { BILLING_KEY: 'billing-key-0123456789' });
    expect(config.apiKeys).toEqual([
      { name: 'billing', key: 'billing-key-0123456789', rate: 50, burst: 50 },
      { name: 'ops', key: 'literal-key-0123456789', rate: 2, burst: 5 },
    ]);
    expect(config.http).toBeNull();
  });

  it('bounds the in-memory store\'s records: max_records, 100,000 by default', () => {
    expect(loadPushConfig(null, {}).maxRecords).toBe(100_000);
    expect(loadPushConfig(file('max_records: 5000'), {}).maxRecords).toBe(5000);
    expect(() => loadPushConfig(file('max_records: 0'), {})).toThrow(/max_records/);
  });

  it('lists every problem with its position, and never prints a key', () => {
    const path = file(['api_keys:', '  - { name: a, key_env: UNSET_KEY }', '  - { name: a, key: short }', 'limits:', '  max_ttl_s: -1', 'ttl: 5'].join('\n'));
    let error: ConfigError | undefined;
    try {
      loadPushConfig(path, {});
    } catch (err) {
      error = err as ConfigError;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect(error!.problems.join('\n')).toMatch(/push\.yaml:3:\d+ api_keys\[1\]\.key: expected at least 16 characters/);
    expect(error!.problems.join('\n')).toMatch(/push\.yaml:5:\d+ limits\.max_ttl_s/);
    expect(error!.problems.join('\n')).toMatch(/push\.yaml:6:1 ttl: unknown key/);
    expect(error!.message).not.toContain('short');
  });

  it('refuses a key_env whose variable is unset, naming the variable only', () => {
    const path = file('api_keys: [{ name: a, key_env: UNSET_KEY }, { name: a, key_env: OTHER_KEY }]\n');
    expect(() => loadPushConfig(path, { OTHER_KEY: 'other-key-0123456789' })).toThrow(/api_keys\[0\]\.key_env: environment variable UNSET_KEY is unset[\s\S]*api_keys\[1\]\.name: duplicate name "a"/);
  });
});
