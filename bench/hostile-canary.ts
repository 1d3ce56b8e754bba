import { parseArgs } from 'node:util';
import { FrameType, Priority } from '../src/protocol/constants.js';
import { encodeData } from '../src/protocol/encoder.js';
import { AttackClient } from './hostile-client.js';

/**
 * The well-behaved client of the hostile bench, in its own process so the attacker's CPU is not its
 * own: one echo session, one message in flight, one every `interval` ms, for `seconds` or until SIGTERM
 * (the bench's end of the attack), after WARM_UP round trips that are not counted. A round trip
 * not answered within 5 s counts as lost (and ends the run: its connection is presumed gone). Prints one
 * JSON line: answered, p50/p99/max in ms, lost, and how the connection ended if it did.
 */
const { values } = parseArgs({
  options: {
    port: { type: 'string' },
    token: { type: 'string' },
    seconds: { type: 'string', default: '600' },
    interval: { type: 'string', default: '20' },
  },
});

const LOST_MS = 5_000;
const WARM_UP = 10;
let stopRequested = false;
process.on('SIGTERM', () => (stopRequested = true));
const latencies: number[] = [];
let lost = 0;
const c = await AttackClient.handshake(Number(values.port), values.token!, { sessionWindow: 0x7fff_ffff, connectionWindow: 0x7fff_ffff });
let ending = 'refused';
if (c) {
  let answered: (() => void) | null = null;
  c.onFrame = (type) => {
    if (type === FrameType.DATA || type === FrameType.OPEN_OK) answered?.();
  };
  const roundTrip = (send: () => void): Promise<boolean> =>
    new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), LOST_MS);
      answered = () => {
        clearTimeout(timer);
        answered = null;
        resolve(true);
      };
      send();
    });
  await roundTrip(() => c.open(1));
  const payload = Buffer.from('canary');
  // Not counted: the first round trips of a fresh proxy and backend take a compile and a first allocation
  // of everything on their path, a cost of the canary's start, not of the attack.
  for (let i = 0; i < WARM_UP && !c.gone; i++) await roundTrip(() => c.socket.write(encodeData(1, Priority.HIGH, payload)));
  console.log(JSON.stringify({ event: 'canary ready' }));
  const end = performance.now() + Number(values.seconds) * 1000;
  while (performance.now() < end && !c.gone && !stopRequested) {
    const started = performance.now();
    if (!(await roundTrip(() => c.socket.write(encodeData(1, Priority.HIGH, payload))))) {
      lost++;
      break;
    }
    latencies.push(performance.now() - started);
    await new Promise((r) => setTimeout(r, Number(values.interval)));
  }
  ending = c.ending;
  c.close();
} else {
  console.log(JSON.stringify({ event: 'canary ready' }));
  while (!stopRequested) await new Promise((r) => setTimeout(r, 50));
}
latencies.sort((a, b) => a - b);
const q = (p: number): number | null => (latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))]! : null);
console.log(JSON.stringify({ event: 'canary done', answered: latencies.length, p50Ms: q(0.5), p99Ms: q(0.99), maxMs: latencies.at(-1) ?? null, lost, ending }));
process.exit(0);
