import { describe, expect, it } from 'vitest';
import { type WorkerLoad, leastConnections } from '../../src/proxy/workers/balancer.js';

const w = (reported: number, fields: Partial<WorkerLoad> = {}): WorkerLoad => ({ reported, receivedAtReport: 0, handed: 0, accepting: true, ...fields });

describe('leastConnections', () => {
  it('picks the worker with the fewest open connections, the lowest slot on a tie', () => {
    expect(leastConnections([w(5), w(3), w(3)])).toBe(1);
    expect(leastConnections([w(0), w(0)])).toBe(0);
  });

  it('counts sockets handed over since the last report, so a burst spreads', () => {
    // Worker 0 reported 2 after receiving 10; 4 more were handed to it since: 6 > 5.
    expect(leastConnections([w(2, { receivedAtReport: 10, handed: 14 }), w(5, { receivedAtReport: 5, handed: 5 })])).toBe(1);
  });

  it('skips workers not taking connections, and answers -1 when none does', () => {
    expect(leastConnections([w(0, { accepting: false }), w(9)])).toBe(1);
    expect(leastConnections([w(0, { accepting: false })])).toBe(-1);
    expect(leastConnections([])).toBe(-1);
  });

  it('keeps a fleet level under a steady stream of accepts', () => {
    const fleet = [w(0), w(0), w(0), w(0)];
    for (let i = 0; i < 1000; i++) fleet[leastConnections(fleet)]!.handed++;
    expect(fleet.map((x) => x.handed)).toEqual([250, 250, 250, 250]);
  });
});
