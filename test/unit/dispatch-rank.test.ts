import { describe, expect, it } from 'vitest';
import { type ProxyRecord, decodeRecord, encodeRecord, indexKey, recordKey } from '../../src/dispatch/proxy-record.js';
import { rankProxies } from '../../src/dispatch/rank.js';

function proxy(id: string, fields: Partial<ProxyRecord> = {}): ProxyRecord {
  return { id, cluster: 'chat', address: `10.0.0.${id.length}:7000`, connections: 0, workers: 1, eventLoopLagMs: 1, draining: false, updatedAt: 0, ...fields };
}

const ids = (records: ProxyRecord[]): string[] => records.map((r) => r.id);

describe('rankProxies', () => {
  it('orders by connections per worker, least loaded first', () => {
    const records = [proxy('a', { connections: 300 }), proxy('b', { connections: 100 }), proxy('c', { connections: 800, workers: 4 })];
    expect(ids(rankProxies(records, { maxLagMs: 500 }))).toEqual(['b', 'c', 'a']);
  });

  it('leaves draining proxies out', () => {
    const records = [proxy('a', { draining: true }), proxy('b', { connections: 5 })];
    expect(ids(rankProxies(records, { maxLagMs: 500 }))).toEqual(['b']);
    expect(rankProxies([proxy('a', { draining: true })], { maxLagMs: 500 })).toEqual([]);
  });

  it('puts proxies whose event loop lags past the limit last, however lightly loaded', () => {
    const records = [proxy('a', { connections: 0, eventLoopLagMs: 900 }), proxy('b', { connections: 5000 }), proxy('c', { connections: 10, eventLoopLagMs: 501 })];
    expect(ids(rankProxies(records, { maxLagMs: 500 }))).toEqual(['b', 'a', 'c']);
  });

  it('counts what this dispatcher handed out since the read, so a burst spreads', () => {
    const records = [proxy('a', { connections: 10 }), proxy('b', { connections: 12 })];
    expect(ids(rankProxies(records, { maxLagMs: 500, assigned: new Map([['a', 3]]) }))).toEqual(['b', 'a']);
  });

  it('breaks ties by lag, then by id, so an answer is deterministic', () => {
    const records = [proxy('c'), proxy('b', { eventLoopLagMs: 0 }), proxy('a')];
    expect(ids(rankProxies(records, { maxLagMs: 500 }))).toEqual(['b', 'a', 'c']);
  });
});

describe('ProxyRecord', () => {
  it('round-trips through its JSON encoding', () => {
    const record = proxy('p-1', { connections: 42, workers: 2, eventLoopLagMs: 3.5, draining: true, updatedAt: 1700000000000 });
    expect(decodeRecord(encodeRecord(record))).toEqual(record);
  });

  it('refuses what is not a record, rather than dispatching to it', () => {
    const good = JSON.parse(encodeRecord(proxy('p'))) as Record<string, unknown>;
    for (const bad of [
      'not json',
      '[]',
      JSON.stringify({ ...good, address: 'nowhere' }),
      JSON.stringify({ ...good, connections: -1 }),
      JSON.stringify({ ...good, workers: 0 }),
      JSON.stringify({ ...good, cluster: 'a b' }),
      JSON.stringify({ ...good, extra: 1 }),
    ]) {
      expect(decodeRecord(bad), bad).toBeNull();
    }
  });

  it('keeps a cluster\'s keys in one Redis Cluster hash slot', () => {
    expect(recordKey('chat', 'p-1')).toBe('livemux:dispatch:{chat}:proxy:p-1');
    expect(indexKey('chat')).toBe('livemux:dispatch:{chat}:proxies');
  });
});
