import { Agent, request } from 'node:http';
import { parseArgs } from 'node:util';
import { LatencyHistogram, clockMs } from './broadcast-protocol.js';

/**
 * Business-server load on the push API: POST /v1/push to one random user of `bench-u0 … bench-u<users-1>`
 * at `rate` calls/s for `seconds`, over keep-alive connections, each push's data the send time on
 * CLOCK_MONOTONIC (ms) so that devices time HTTP → device. Calls beyond `max-in-flight` unanswered are
 * not sent (the step then falls short of its rate). Prints one line when done:
 * `{"event":"done","offered","sent","skipped","accepted","failed","seconds","p50Ms","p99Ms"}` (HTTP response times).
 */
const { values } = parseArgs({
  options: {
    api: { type: 'string' },
    key: { type: 'string' },
    users: { type: 'string' },
    rate: { type: 'string' },
    seconds: { type: 'string', default: '3' },
    ttl: { type: 'string', default: '60' },
    'max-in-flight': { type: 'string', default: '2000' },
  },
});
const url = new URL('/v1/push', values.api);
const users = Number(values.users);
const rate = Number(values.rate);
const seconds = Number(values.seconds);
const ttl = Number(values.ttl);
const maxInFlight = Number(values['max-in-flight']);
const agent = new Agent({ keepAlive: true, maxSockets: 64 });
const headers = { authorization: `Bearer ${values.key}`, 'content-type': 'application/json' };

let sent = 0;
/** Send slots used: sent, or skipped while too many calls were unanswered. */
let slots = 0;
let skipped = 0;
let accepted = 0;
let failed = 0;
let inFlight = 0;
const http = new LatencyHistogram();

function call(): void {
  const start = clockMs();
  const body = JSON.stringify({ to: { users: [`bench-u${Math.floor(Math.random() * users)}`] }, data: start.toFixed(3), ttl_s: ttl });
  inFlight++;
  sent++;
  const req = request(url, { method: 'POST', agent, headers: { ...headers, 'content-length': Buffer.byteLength(body) } }, (res) => {
    res.resume();
    res.on('end', () => {
      inFlight--;
      http.add(clockMs() - start);
      if (res.statusCode === 202) accepted++;
      else failed++;
    });
  });
  req.on('error', () => {
    inFlight--;
    failed++;
  });
  req.end(body);
}

const begin = clockMs();
const end = begin + seconds * 1000;
await new Promise<void>((resolve) => {
  const tick = setInterval(() => {
    const now = Math.min(clockMs(), end);
    const due = Math.floor(((now - begin) / 1000) * rate);
    for (; slots < due && inFlight < maxInFlight; slots++) call();
    // Calls that could not be sent in time are skipped, not sent late in a burst.
    skipped += due - slots;
    slots = due;
    if (now >= end) {
      clearInterval(tick);
      resolve();
    }
  }, 1);
});
const offered = Math.floor(seconds * rate);
while (inFlight > 0) await new Promise((r) => setTimeout(r, 5));
const result = { event: 'done', offered, sent, skipped, accepted, failed, seconds: (clockMs() - begin) / 1000, p50Ms: http.quantile(0.5), p99Ms: http.quantile(0.99) };
process.stdout.write(`${JSON.stringify(result)}\n`);
process.exit(0);
