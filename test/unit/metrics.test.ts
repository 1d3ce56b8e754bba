import { describe, expect, it } from 'vitest';
import { FrameStats, createMetrics } from '../../src/observability/metrics.js';
import { FrameType } from '../../src/protocol/constants.js';

/** The value of one sample line in Prometheus text, or undefined. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('FrameStats', () => {
  it('counts frames and bytes per type and direction', () => {
    const stats = new FrameStats();
    stats.countIn(FrameType.DATA, 100);
    stats.countIn(FrameType.DATA, 50);
    stats.countOut(FrameType.PONG, 20);
    expect(stats.inFrames[FrameType.DATA]).toBe(2);
    expect(stats.inBytes[FrameType.DATA]).toBe(150);
    expect(stats.outFrames[FrameType.PONG]).toBe(1);
    expect(stats.outBytes[FrameType.PONG]).toBe(20);
    expect(stats.outFrames[FrameType.DATA]).toBe(0);
  });
});

describe('createMetrics', () => {
  it('exports frame counters from FrameStats at scrape time, every type present', async () => {
    const metrics = createMetrics();
    metrics.frameStats.countIn(FrameType.DATA, 112);
    metrics.frameStats.countOut(FrameType.WINDOW_UPDATE, 16);
    let text = await metrics.registry.metrics();
    expect(sample(text, 'livemux_frames_received_total{type="DATA"}')).toBe(1);
    expect(sample(text, 'livemux_received_bytes_total{type="DATA"}')).toBe(112);
    expect(sample(text, 'livemux_frames_sent_total{type="WINDOW_UPDATE"}')).toBe(1);
    expect(sample(text, 'livemux_sent_bytes_total{type="WINDOW_UPDATE"}')).toBe(16);
    expect(sample(text, 'livemux_frames_received_total{type="HELLO"}')).toBe(0);
    expect(sample(text, 'livemux_frames_sent_total{type="ERROR"}')).toBe(0);
    // A second scrape shows totals, not deltas added twice.
    metrics.frameStats.countIn(FrameType.DATA, 12);
    text = await metrics.registry.metrics();
    expect(sample(text, 'livemux_frames_received_total{type="DATA"}')).toBe(2);
    expect(sample(text, 'livemux_received_bytes_total{type="DATA"}')).toBe(124);
  });

  it('exposes the named proxy metrics with their labels', async () => {
    const metrics = createMetrics();
    metrics.connections.inc();
    metrics.connectionsAccepted.inc();
    metrics.connectionsClosed.inc({ code: 'NORMAL' });
    metrics.sessions.inc({ business: 'echo' });
    metrics.sessionsOpened.inc({ business: 'echo', result: 'ok' });
    metrics.protocolErrors.inc({ code: 'BAD_FLAGS' });
    metrics.drops.inc({ reason: 'queue_full', priority: 'low' });
    metrics.backendStreamState.set({ endpoint: '127.0.0.1:7101', state: 'ready' }, 1);
    metrics.setBackendMessageSource(() => [['127.0.0.1:7101', { out: 3, in: 2 }]]);
    metrics.limitHits.inc({ limit: 'connections.max_per_user' });
    const text = await metrics.registry.metrics();
    expect(sample(text, 'livemux_connections')).toBe(1);
    expect(sample(text, 'livemux_connections_accepted_total')).toBe(1);
    expect(sample(text, 'livemux_connections_closed_total{code="NORMAL"}')).toBe(1);
    expect(sample(text, 'livemux_sessions{business="echo"}')).toBe(1);
    expect(sample(text, 'livemux_sessions_opened_total{business="echo",result="ok"}')).toBe(1);
    expect(sample(text, 'livemux_protocol_errors_total{code="BAD_FLAGS"}')).toBe(1);
    expect(sample(text, 'livemux_dropped_frames_total{reason="queue_full",priority="low"}')).toBe(1);
    expect(sample(text, 'livemux_backend_stream_state{endpoint="127.0.0.1:7101",state="ready"}')).toBe(1);
    expect(sample(text, 'livemux_backend_messages_total{endpoint="127.0.0.1:7101",direction="out"}')).toBe(3);
    expect(sample(text, 'livemux_backend_messages_total{endpoint="127.0.0.1:7101",direction="in"}')).toBe(2);
    expect(sample(text, 'livemux_limit_hits_total{limit="connections.max_per_user"}')).toBe(1);
  });

  it('includes process metrics and prefixes every name with livemux_', async () => {
    const text = await createMetrics().registry.metrics();
    expect(text).toContain('livemux_process_cpu_user_seconds_total');
    const names = text.split('\n').filter((l) => l.startsWith('# TYPE ')).map((l) => l.split(' ')[2]!);
    expect(names.length).toBeGreaterThan(20);
    expect(names.filter((n) => !n.startsWith('livemux_'))).toEqual([]);
    for (const line of text.split('\n').filter((l) => l.startsWith('# TYPE ') && l.endsWith(' counter'))) {
      expect(line.split(' ')[2]).toMatch(/_total$/);
    }
  });

  it('keeps registries apart', async () => {
    const a = createMetrics();
    const b = createMetrics();
    a.connectionsAccepted.inc(5);
    expect(sample(await b.registry.metrics(), 'livemux_connections_accepted_total')).toBe(0);
  });
});
