import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { LatencyHistogram, clockMs } from './broadcast-protocol.js';
import { PipelinedConnection, requestHead } from './http-pipeline.js';

/**
 * Business-server load on the push API: POST /v1/push to one random user of `bench-u0 … bench-u<users-1>`,
 * each push's data the send time on CLOCK_MONOTONIC (ms) so that devices time HTTP → device. The calls
 * due at each `tick-ms` tick leave together on one of `connections` keep-alive connections (taken in
 * turn), pipelined: one wake-up and one write per tick whatever the rate, so that this process costs
 * the machine far less than the push node it loads (see http-pipeline.ts). Calls beyond `max-in-flight`
 * unanswered are not sent (the run then falls short of its rate).
 *
 * One process serves every run of a bench section, as a business server stays up: its start (module
 * loading, V8 compiling its code on the machine's two cores) happens once, before anything is timed,
 * and not at the start of each timed run. Prints `{"event":"ready"}` once connected, then runs each
 * `{"rate","seconds"}` line read on stdin, printing one line when done:
 * `{"event":"done","offered","sent","skipped","accepted","failed","seconds","p50Ms","p99Ms","cpuUs"}`
 * (HTTP response times; this process's CPU time over the run). Exits when stdin ends.
 */
const { values } = parseArgs({
  options: {
    api: { type: 'string' },
    key: { type: 'string' },
    users: { type: 'string' },
    ttl: { type: 'string', default: '60' },
    connections: { type: 'string', default: '4' },
    'tick-ms': { type: 'string', default: '5' },
    'max-in-flight': { type: 'string', default: '2000' },
  },
});
const api = new URL(values.api!);
const users = Number(values.users);
const ttl = Number(values.ttl);
const maxInFlight = Number(values['max-in-flight']);
const head = requestHead('POST', '/v1/push', api.host, { authorization: `Bearer ${values.key}`, 'content-type': 'application/json' });
const connections = Array.from({ length: Number(values.connections) }, () => new PipelinedConnection(api.hostname, Number(api.port)));
await Promise.all(connections.map((c) => c.ready));

interface Run {
  sent: number;
  /** Send slots used: sent, or skipped while too many calls were unanswered. */
  slots: number;
  skipped: number;
  accepted: number;
  failed: number;
  inFlight: number;
  http: LatencyHistogram;
}

let turn = 0;

function call(run: Run, connection: PipelinedConnection): void {
  const start = clockMs();
  const body = JSON.stringify({ to: { users: [`bench-u${Math.floor(Math.random() * users)}`] }, data: start.toFixed(3), ttl_s: ttl });
  run.inFlight++;
  run.sent++;
  connection.send(head, body, (status) => {
    run.inFlight--;
    run.http.add(clockMs() - start);
    if (status === 202) run.accepted++;
    else run.failed++;
  });
}

async function load(rate: number, seconds: number): Promise<object> {
  const run: Run = { sent: 0, slots: 0, skipped: 0, accepted: 0, failed: 0, inFlight: 0, http: new LatencyHistogram() };
  const cpuBefore = process.cpuUsage();
  const begin = clockMs();
  const end = begin + seconds * 1000;
  await new Promise<void>((resolve) => {
    const tick = setInterval(() => {
      const now = Math.min(clockMs(), end);
      const due = Math.floor(((now - begin) / 1000) * rate);
      const connection = connections[turn++ % connections.length]!;
      for (; run.slots < due && run.inFlight < maxInFlight; run.slots++) call(run, connection);
      // Calls that could not be sent in time are skipped, not sent late in a burst.
      run.skipped += due - run.slots;
      run.slots = due;
      if (now >= end) {
        clearInterval(tick);
        resolve();
      }
    }, Number(values['tick-ms']));
  });
  const offered = Math.floor(seconds * rate);
  while (run.inFlight > 0) await new Promise((r) => setTimeout(r, 5));
  const cpu = process.cpuUsage(cpuBefore);
  const { sent, skipped, accepted, failed, http } = run;
  return { event: 'done', offered, sent, skipped, accepted, failed, seconds: (clockMs() - begin) / 1000, p50Ms: http.quantile(0.5), p99Ms: http.quantile(0.99), cpuUs: cpu.user + cpu.system };
}

// Stopped by the bench with SIGTERM: exit as a profiled process must (its profile is written at exit).
process.on('SIGTERM', () => process.exit(0));
process.stdout.write(`${JSON.stringify({ event: 'ready' })}\n`);
for await (const line of createInterface({ input: process.stdin })) {
  const { rate, seconds } = JSON.parse(line) as { rate: number; seconds: number };
  process.stdout.write(`${JSON.stringify(await load(rate, seconds))}\n`);
}
for (const c of connections) c.close();
process.exit(0);
