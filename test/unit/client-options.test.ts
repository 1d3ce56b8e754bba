import { describe, expect, it } from 'vitest';
import { resolveOptions } from '../../src/client/options.js';
import { problems } from '../helpers/config-problems.js';

describe('connect() options: where to connect', () => {
  it('tries host/port first, then `addresses` in order', () => {
    const o = resolveOptions({ host: 'a', port: 1, addresses: ['b:2', '[::1]:3'], token: 't' });
    expect(o.addresses).toEqual([{ host: 'a', port: 1 }, { host: 'b', port: 2 }, { host: '::1', port: 3 }]);
    expect(o.dispatch).toBeNull();
  });

  it('takes a dispatcher URL alone, or with a static fallback', () => {
    const url = 'http://dispatch.example:7080/v1/dispatch?cluster=chat';
    expect(resolveOptions({ dispatch: url, token: 't' })).toMatchObject({ addresses: [], dispatch: { url, timeoutMs: 3_000 } });
    expect(resolveOptions({ dispatch: url, dispatchTimeoutMs: 500, addresses: ['b:2'], token: 't' })).toMatchObject({
      addresses: [{ host: 'b', port: 2 }],
      dispatch: { url, timeoutMs: 500 },
    });
  });

  it('names every problem at once', () => {
    expect(problems(() => resolveOptions({ token: 't' }))).toEqual(['host: expected host and port, addresses or dispatch: somewhere to connect, got undefined']);
    expect(problems(() => resolveOptions({ host: 'a', addresses: ['b', 'c:99999'], dispatch: 'ftp://x', dispatchTimeoutMs: 0, token: 't' }))).toEqual([
      'port: expected an integer 1..65535, got undefined',
      'addresses[0]: expected a "host:port" string, got "b"',
      'addresses[1]: expected a "host:port" string, got "c:99999"',
      'dispatch: expected an http:// or https:// URL, got "ftp://x"',
      'dispatchTimeoutMs: expected a positive integer, got 0',
    ]);
  });
});
