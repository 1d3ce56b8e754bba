import { parseArgs } from 'node:util';
import { BenchConnection } from './bench-connection.js';

/**
 * Holds `conns` connections × `sessions` idle sessions of `business` open on the proxy. Prints one JSON
 * line once every OPEN has been answered (`opened`, `refused`), then keeps the sessions open, answering
 * heartbeats, until killed.
 */
const { values } = parseArgs({
  options: {
    port: { type: 'string' },
    conns: { type: 'string', default: '157' },
    sessions: { type: 'string', default: '64' },
    business: { type: 'string', default: 'echo' },
    token: { type: 'string', default: '' },
  },
});

async function holdConnection(): Promise<{ opened: number; refused: number }> {
  const conn = await BenchConnection.connect(Number(values.port));
  await conn.hello(values.token!);
  return conn.open(values.business!, Number(values.sessions));
}

const results = await Promise.all(Array.from({ length: Number(values.conns) }, holdConnection));
const sum = (key: 'opened' | 'refused'): number => results.reduce((n, r) => n + r[key], 0);
console.log(JSON.stringify({ event: 'sessions open', opened: sum('opened'), refused: sum('refused') }));
process.on('SIGTERM', () => process.exit(0));
