import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { HistogramSeries, SeriesHistogram } from '../../src/observability/histogram.js';

describe('HistogramSeries', () => {
  it('counts a value in the first bucket whose bound is >= it (Prometheus `le`), the rest in +Inf', () => {
    const s = new HistogramSeries([0.1, 1]);
    for (const v of [0, 0.1, 0.5, 1, 7]) s.observe(v);
    expect([...s.counts]).toEqual([2, 2, 1]);
    expect(s.count).toBe(5);
    expect(s.sum).toBeCloseTo(8.6);
  });
});

describe('SeriesHistogram', () => {
  it('is exposed as a Prometheus histogram: cumulative buckets, +Inf, _sum and _count per label set', async () => {
    const registry = new Registry();
    const h = new SeriesHistogram<'lane'>({ name: 'x_seconds', help: 'X.', labelNames: ['lane'], buckets: [0.01, 0.1], registers: [registry] });
    const high = h.series({ lane: 'high' });
    high.observe(0.005);
    high.observe(0.05);
    high.observe(3);
    expect(h.series({ lane: 'high' })).toBe(high);
    h.series({ lane: 'low' });
    const text = await registry.metrics();
    expect(text).toContain('# TYPE x_seconds histogram');
    expect(text).toContain('x_seconds_bucket{lane="high",le="0.01"} 1\nx_seconds_bucket{lane="high",le="0.1"} 2\nx_seconds_bucket{lane="high",le="+Inf"} 3');
    expect(text).toContain('x_seconds_sum{lane="high"} 3.055');
    expect(text).toContain('x_seconds_count{lane="high"} 3');
    expect(text).toContain('x_seconds_count{lane="low"} 0');
    h.remove({ lane: 'low' });
    expect(await registry.metrics()).not.toContain('lane="low"');
  });
});
