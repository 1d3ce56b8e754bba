import { parseArgs } from 'node:util';
import { LatencyHistogram, clockMs } from './broadcast-protocol.js';
import { PipelinedConnection, requestHead } from './http-pipeline.js';

/**
 * Business-server load on the push API: POST /v1/push to one random user of `bench-u0 … bench-u<users-1>`
 * at `rate` calls/s for `seconds`, each push's data the send time on CLOCK_MONOTONIC (ms) so that
 * devices time HTTP → device. The calls due at each `tick-ms` tick leave together on one of
 * `connections` keep-alive connections (taken in turn), pipelined: one wake-up and one write per tick
 * whatever the rate, so that this process costs the machine far less than the push node it loads
 * (see http-pipeline.ts). Calls beyond
 * `max-in-flight` unanswered are not sent (the step then falls short of its rate). Prints one line when done:
 * `{"event":"done","offered","sent","skipped","accepted","failed","seconds","p50Ms","p99Ms","cpuUs"}` (HTTP response
 * times; this process's CPU time from the first call on).
 */
const { values } = parseArgs({
  options: {
    api: { type: 'string' },
    key: { type: 'string' },
    users: { type: 'string' },
    rate: { type: 'string' },
    seconds: { type: 'string', default: '3' },
    ttl: { type: 'string', default: '60' },
    connections: { type: 'string', default: '4' },
    'tick-ms': { type: 'string', default: '5' },
    'max-in-flight': { type: 'string', default: '2000' },
  },
});
const api = new URL(values.api!);
const users = Number(values.users);
const rate = Number(values.rate);
const seconds = Number(values.seconds);
const ttl = Number(values.ttl);
const maxInFlight = Number(values['max-in-flight']);
const head = requestHead('POST', '/v1/push', api.host, { authorization: `Bearer ${values.key}`, 'content-type': 'application/json' });
const connections = Array.from({ length: Number(values.connections) }, () => new PipelinedConnection(api.hostname, Number(api.port)));
await Promise.all(connections.map((c) => c.ready));

let sent = 0;
/** Send slots used: sent, or skipped while too many calls were unanswered. */
let slots = 0;
let skipped = 0;
let accepted = 0;
let failed = 0;
let inFlight = 0;
let turn = 0;
const http = new LatencyHistogram();

function call(connection: PipelinedConnection): void {
  const start = clockMs();
  const body = JSON.stringify({ to: { users: [`bench-u${Math.floor(Math.random() * users)}`] }, data: start.toFixed(3), ttl_s: ttl });
  inFlight++;
  sent++;
  connection.send(head, body, (status) => {
    inFlight--;
    http.add(clockMs() - start);
    if (status === 202) accepted++;
    else failed++;
  });
}

const cpuBefore = process.cpuUsage();
const begin = clockMs();
const end = begin + seconds * 1000;
await new Promise<void>((resolve) => {
  const tick = setInterval(() => {
    const now = Math.min(clockMs(), end);
    const due = Math.floor(((now - begin) / 1000) * rate);
    const connection = connections[turn++ % connections.length]!;
    for (; slots < due && inFlight < maxInFlight; slots++) call(connection);
    // Calls that could not be sent in time are skipped, not sent late in a burst.
    skipped += due - slots;
    slots = due;
    if (now >= end) {
      clearInterval(tick);
      resolve();
    }
  }, Number(values['tick-ms']));
});
const offered = Math.floor(seconds * rate);
while (inFlight > 0) await new Promise((r) => setTimeout(r, 5));
const cpu = process.cpuUsage(cpuBefore);
const result = { event: 'done', offered, sent, skipped, accepted, failed, seconds: (clockMs() - begin) / 1000, p50Ms: http.quantile(0.5), p99Ms: http.quantile(0.99), cpuUs: cpu.user + cpu.system };
process.stdout.write(`${JSON.stringify(result)}\n`);
for (const c of connections) c.close();
process.exit(0);
