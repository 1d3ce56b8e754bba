import { describe, expect, it } from 'vitest';
import { parseRoutesConfig } from '../../src/config/routes-config.js';
import { changesOnly, diffRoutes } from '../../src/config/routes-diff.js';

const routes = (text: string) => parseRoutesConfig(text, 'routes.yaml');

describe('diffRoutes', () => {
  it('names the routes, pools and endpoints a reload added, removed or changed', () => {
    const before = routes(`version: 1
routes:
  - { business: echo, pool: a }
  - { business: chat, pool: a }
  - { business: gone, pool: a }
pools:
  a: { protocol: grpc, endpoints: [{ address: "127.0.0.1:1" }, { address: "127.0.0.1:2" }] }
  old: { protocol: grpc, endpoints: [{ address: "127.0.0.1:9" }] }
`);
    const after = routes(`version: 1
routes:
  - { business: echo, pool: a }
  - { business: chat, pool: a, policy: consistent_hash, hash_key: metadata.room_id }
  - { business: news, pool: b }
pools:
  a: { protocol: grpc, endpoints: [{ address: "127.0.0.1:1", weight: 3 }, { address: "127.0.0.1:3" }], health_check: { interval_ms: 1000 } }
  b: { protocol: grpc, endpoints: [{ address: "127.0.0.1:4" }] }
`);
    expect(changesOnly(diffRoutes(before, after))).toEqual({
      routesAdded: ['news'],
      routesRemoved: ['gone'],
      routesChanged: ['chat'],
      poolsAdded: ['b'],
      poolsRemoved: ['old'],
      poolsChanged: ['a'],
      endpointsAdded: ['a/127.0.0.1:3'],
      endpointsRemoved: ['a/127.0.0.1:2'],
      endpointsChanged: ['a/127.0.0.1:1'],
    });
    expect(changesOnly(diffRoutes(after, after))).toEqual({});
  });
});
