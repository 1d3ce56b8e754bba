/**
 * The Chat backend process with `--admin-port`: it serves /metrics (livemux_chat_*, with process
 * metrics), /healthz and /readyz, and the message counters move with real traffic through a proxy.
 * Without the flag there is no admin server; a bad value is a usage error.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type LivemuxClient } from '../../src/client/index.js';
import { WireRole, decodeChatEvent, encodeChatRequest, type ChatEvent } from '../../src/backends/chat/chat-codec.js';
import { type RunningProcess, runLivemux, startProxy, testToken } from '../helpers/processes.js';

const processes: RunningProcess[] = [];
let client: LivemuxClient | null = null;
let proxyPort: number;
let admin: string;

beforeAll(async () => {
  const backend = runLivemux(['chat-backend', '--host', '127.0.0.1', '--port', '0', '--admin-host', '127.0.0.1', '--admin-port', '0']);
  processes.push(backend);
  const listening = await backend.waitFor((l) => l.event === 'listening');
  admin = `http://127.0.0.1:${listening.adminPort as number}`;
  const proxy = await startProxy({
    backends: [],
    routes: {
      version: 1,
      routes: [{ business: 'chat', pool: 'chat', policy: 'consistent_hash', hash_key: 'metadata.room_id' }],
      pools: { chat: { protocol: 'grpc', endpoints: [{ address: `127.0.0.1:${listening.port as number}` }] } },
    },
  });
  processes.push(proxy);
  proxyPort = proxy.port;
});

afterAll(async () => {
  await client?.close();
  await Promise.all(processes.map((p) => p.stop('SIGTERM')));
});

async function scrape(): Promise<string> {
  const res = await fetch(`${admin}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  return res.text();
}

describe('chat backend admin server', () => {
  it('serves /healthz and /readyz', async () => {
    expect((await fetch(`${admin}/healthz`)).status).toBe(200);
    const ready = await fetch(`${admin}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.text()).toBe('ready\n');
  });

  it('serves livemux_chat_ metrics that follow the traffic', async () => {
    const before = await scrape();
    expect(before).toContain('livemux_chat_messages_accepted_total{priority="high"} 0');
    expect(before).toContain('livemux_chat_process_cpu_user_seconds_total');

    client = await connect({ host: '127.0.0.1', port: proxyPort, token: await testToken('alice'), reconnect: false });
    const session = await client.open('chat', { room_id: 'metrics-room' });
    const events: ChatEvent[] = [];
    session.on('data', (payload: Buffer) => events.push(decodeChatEvent(payload)));
    await session.send(encodeChatRequest({ requestId: 1, join: { sinceSeq: 0, role: WireRole.UNSPECIFIED } }));
    await session.send(encodeChatRequest({ requestId: 2, send: { body: Buffer.from('hello'), clientMsgId: '' } }));
    const deadline = Date.now() + 10_000;
    while (!events.some((e) => e.reply?.requestId === 2) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(events.find((e) => e.reply?.requestId === 2)?.reply).toMatchObject({ ok: true, sent: { seq: 1 } });

    const after = await scrape();
    expect(after).toContain('livemux_chat_messages_accepted_total{priority="high"} 1');
    expect(after).toContain('livemux_chat_rooms 1');
    expect(after).toContain('livemux_chat_members_online 1');
  });

  it('refuses a bad --admin-port (the CLI exits 1 on a usage error)', async () => {
    const bad = runLivemux(['chat-backend', '--port', '0', '--admin-port', 'nope']);
    expect(await bad.exited).toBe(2);
    expect(bad.lines.some((l) => l.event === 'listening')).toBe(false);
  });
});
