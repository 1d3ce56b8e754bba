import type { Metric, Registry } from 'prom-client';

/**
 * One label set's samples: counts per bucket in a plain array. `observe` is a walk over a dozen bounds
 * and three additions, cheap enough for the per-frame and per-member paths; prom-client's own
 * Histogram#observe hashes the label set on every call (1-2 µs measured here), which a fan-out to
 * thousands of members would pay thousands of times per turn.
 */
export class HistogramSeries {
  /** Samples per bucket, not cumulative; the last slot is +Inf. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(readonly bounds: readonly number[]) {
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(value: number): void {
    const bounds = this.bounds;
    let i = 0;
    while (i < bounds.length && value > bounds[i]!) i++;
    this.counts[i]! += 1;
    this.sum += value;
    this.count += 1;
  }

  reset(): void {
    this.counts.fill(0);
    this.sum = 0;
    this.count = 0;
  }
}

export interface SeriesHistogramOptions<L extends string> {
  name: string;
  help: string;
  /** Upper bounds, ascending (+Inf is implied). */
  buckets: readonly number[];
  labelNames?: readonly L[];
  registers: Registry[];
}

/**
 * A Prometheus histogram whose label sets are {@link HistogramSeries} made once and kept by the code that
 * observes (labels must come from a bounded set: priorities, endpoints and businesses from the config,
 * results). The registry reads the series when scraped; the exposition is prom-client's own.
 */
export class SeriesHistogram<L extends string = never> {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  readonly name: string;
  readonly help: string;
  private readonly buckets: readonly number[];
  private readonly labelNames: readonly L[];
  private readonly bySet = new Map<string, { labels: Record<string, string>; series: HistogramSeries }>();

  constructor(options: SeriesHistogramOptions<L>) {
    this.name = options.name;
    this.help = options.help;
    this.buckets = options.buckets;
    this.labelNames = options.labelNames ?? [];
    // prom-client has no public type for a custom collector; its registry asks a metric only for name,
    // help, type, get() and reset(), which this class provides.
    for (const registry of options.registers) registry.registerMetric(this as unknown as Metric);
  }

  /** The series of one label set, made on first use. Look it up once and keep it on hot paths. */
  series(labels: Record<L, string>): HistogramSeries {
    const key = this.labelNames.map((n) => labels[n]).join('\u0000');
    let entry = this.bySet.get(key);
    if (!entry) this.bySet.set(key, (entry = { labels: { ...labels }, series: new HistogramSeries(this.buckets) }));
    return entry.series;
  }

  /** Forgets a label set (e.g. an endpoint a reload removed), so it no longer appears in /metrics. */
  remove(labels: Record<L, string>): void {
    this.bySet.delete(this.labelNames.map((n) => labels[n]).join('\u0000'));
  }

  async get(): Promise<{ name: string; help: string; type: 'histogram'; aggregator: 'sum'; values: { labels: Record<string, string | number>; value: number; metricName: string }[] }> {
    const values: { labels: Record<string, string | number>; value: number; metricName: string }[] = [];
    for (const { labels, series } of this.bySet.values()) {
      let cumulative = 0;
      this.buckets.forEach((le, i) => {
        cumulative += series.counts[i]!;
        values.push({ labels: { ...labels, le }, value: cumulative, metricName: `${this.name}_bucket` });
      });
      values.push({ labels: { ...labels, le: '+Inf' }, value: series.count, metricName: `${this.name}_bucket` });
      values.push({ labels, value: series.sum, metricName: `${this.name}_sum` });
      values.push({ labels, value: series.count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  reset(): void {
    for (const { series } of this.bySet.values()) series.reset();
  }
}
