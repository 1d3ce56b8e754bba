/**
 * Prometheus metrics of one Push backend node, in their own registry, prefixed `livemux_push_`. Label
 * values are bounded: audiences, routes, HTTP statuses. No API key, user, device or topic is a label.
 */
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';

export interface PushMetrics {
  readonly registry: Registry;
  /** livemux_push_accepted_total{audience}: pushes created (an idempotent repeat is not counted). */
  readonly accepted: Counter<'audience'>;
  /** livemux_push_api_responses_total{route,status}: answered API calls. */
  readonly apiResponses: Counter<'route' | 'status'>;
  /** livemux_push_acks_received_total / livemux_push_acks_counted_total: acks from devices, and those that counted a new delivery. */
  readonly acksReceived: Counter;
  readonly acksCounted: Counter;
  /** Counts a push created (`accepted`), cheaply: see Tally. */
  created(audience: string): void;
  /** Counts an answered API call (`apiResponses`), cheaply: see Tally. */
  answered(route: string, status: number): void;
}

/**
 * Counts per pair of label values in plain numbers, handed to a prom-client Counter when it is read
 * (scrape or `get`): Counter.inc with labels checks and hashes them on every call, which on the path of
 * every API call cost the push node ~2 % of its time.
 */
class Tally {
  private readonly counts = new Map<string, Map<string | number, number>>();

  add(a: string, b: string | number = ''): void {
    let inner = this.counts.get(a);
    if (inner === undefined) this.counts.set(a, (inner = new Map()));
    inner.set(b, (inner.get(b) ?? 0) + 1);
  }

  /** Hands every count to `inc` and starts again from zero. */
  drain(inc: (a: string, b: string | number, n: number) => void): void {
    for (const [a, inner] of this.counts) {
      for (const [b, n] of inner) if (n > 0) inc(a, b, n);
      inner.clear();
    }
  }
}

export function createPushMetrics(source: { devices: () => number; proxies: () => number }, options: { processMetrics?: boolean } = {}): PushMetrics {
  const registry = new Registry();
  if (options.processMetrics) collectDefaultMetrics({ register: registry, prefix: 'livemux_push_' });
  new Gauge({ name: 'livemux_push_devices_online', help: 'Push sessions (devices) open on this node.', registers: [registry], collect() { this.set(source.devices()); } });
  new Gauge({ name: 'livemux_push_proxies_attached', help: 'Proxies attached to this node (each gets a topic push once).', registers: [registry], collect() { this.set(source.proxies()); } });
  const created = new Tally();
  const answered = new Tally();
  return {
    registry,
    accepted: new Counter({
      name: 'livemux_push_accepted_total',
      help: 'Pushes created, by audience.',
      labelNames: ['audience'],
      registers: [registry],
      collect() {
        created.drain((audience, _, n) => this.inc({ audience }, n));
      },
    }),
    apiResponses: new Counter({
      name: 'livemux_push_api_responses_total',
      help: 'Push API calls answered, by route and HTTP status.',
      labelNames: ['route', 'status'],
      registers: [registry],
      collect() {
        answered.drain((route, status, n) => this.inc({ route, status: String(status) }, n));
      },
    }),
    acksReceived: new Counter({ name: 'livemux_push_acks_received_total', help: 'Push ids acknowledged by devices.', registers: [registry] }),
    acksCounted: new Counter({ name: 'livemux_push_acks_counted_total', help: 'Acks that counted a new delivery (first ack of a device for a push).', registers: [registry] }),
    created: (audience) => created.add(audience),
    answered: (route, status) => answered.add(route, status),
  };
}
