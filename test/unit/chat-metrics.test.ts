/**
 * The Chat backend's metrics (src/backends/chat/chat-metrics.ts), driven through its handlers: message
 * counters export the engine's ChatStats (one source), gauges read the live rooms, and the counters of
 * history trims and gaps and of moderation outcomes follow what the requests did.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Priority } from '../../src/protocol/constants.js';
import { createChatBackend, type ChatBackend, type ChatBackendOptions } from '../../src/backends/chat/chat-backend.js';
import { ModerateAction, WireRole } from '../../src/backends/chat/chat-codec.js';
import { ChatErrorCode } from '../../src/backends/chat/chat-errors.js';
import { moderationActionName } from '../../src/backends/chat/chat-metrics.js';
import { ChatHarness } from '../helpers/chat-harness.js';
import { FakeProxyStream } from '../helpers/fake-proxy-stream.js';

const ROOM = 'room-m';
let chat: ChatBackend;
let harness: ChatHarness;

afterEach(async () => {
  await chat?.close();
});

function start(options: ChatBackendOptions = {}): void {
  chat = createChatBackend({ userRate: 10_000, userBurst: 10_000, ...options });
  harness = new ChatHarness(chat);
}

async function join(p: FakeProxyStream, session: number, userId: string, opts: { role?: string; sinceSeq?: number; room?: string } = {}): Promise<void> {
  harness.open(p, session, userId, { room: opts.room ?? ROOM, ...(opts.role === undefined ? {} : { role: opts.role }) });
  const reply = await harness.call(p, session, { join: { sinceSeq: opts.sinceSeq ?? 0, role: WireRole.UNSPECIFIED } });
  expect(reply.ok).toBe(true);
}

function send(p: FakeProxyStream, session: number, text: string, priority: Priority = Priority.HIGH): number {
  return harness.request(p, session, { send: { body: Buffer.from(text), clientMsgId: '' } }, priority);
}

function moderate(p: FakeProxyStream, session: number, action: number, target: string): number {
  return harness.request(p, session, { moderate: { action, targetUser: target, durationMs: 0, reason: '' } });
}

/** The value of one sample of `name` with exactly `labels` (0 when absent). */
async function value(name: string, labels: Record<string, string> = {}): Promise<number> {
  const metric = chat.metrics.registry.getSingleMetric(name);
  if (metric === undefined) throw new Error(`no metric ${name}`);
  const { values } = await metric.get();
  const wanted = Object.entries(labels);
  const sample = values.find((v) => {
    const have = Object.entries(v.labels);
    return have.length === wanted.length && wanted.every(([k, x]) => v.labels[k] === x);
  });
  return sample?.value ?? 0;
}

describe('Chat backend metrics', () => {
  it('export accepted and dropped messages by priority and reason, equal to chat.stats', async () => {
    start({ words: ['badword'], userRate: 1, userBurst: 2, roomRate: 4 });
    const p = new FakeProxyStream();
    await join(p, 1, 'host', { role: 'host' });
    await join(p, 2, 'bob');
    await join(p, 3, 'carol');
    send(p, 2, 'one', Priority.LOW);
    send(p, 2, 'two');
    send(p, 2, 'three'); // user_rate: burst 2
    send(p, 3, 'a badword', Priority.LOW); // word
    moderate(p, 1, ModerateAction.MUTE, 'carol');
    send(p, 3, 'muted'); // muted
    for (let i = 0; i < 3; i++) send(p, 1, `pinned ${i}`, Priority.SYSTEM); // host: never dropped
    await chat.settled();

    expect(await value('livemux_chat_messages_accepted_total', { priority: 'low' })).toBe(1);
    expect(await value('livemux_chat_messages_accepted_total', { priority: 'high' })).toBe(1);
    expect(await value('livemux_chat_messages_accepted_total', { priority: 'system' })).toBe(3);
    expect(await value('livemux_chat_messages_dropped_total', { reason: 'user_rate', priority: 'high' })).toBe(1);
    expect(await value('livemux_chat_messages_dropped_total', { reason: 'word', priority: 'low' })).toBe(1);
    expect(await value('livemux_chat_messages_dropped_total', { reason: 'muted', priority: 'high' })).toBe(1);
    expect(await value('livemux_chat_messages_dropped_total', { reason: 'room_rate', priority: 'low' })).toBe(0);

    // Every sample mirrors the engine's counters: there is no second count to drift.
    for (const [reason, byPriority] of Object.entries(chat.stats.dropped)) {
      for (const [priority, n] of Object.entries(byPriority)) {
        expect(await value('livemux_chat_messages_dropped_total', { reason, priority })).toBe(n);
      }
    }
    for (const [priority, n] of Object.entries(chat.stats.accepted)) {
      expect(await value('livemux_chat_messages_accepted_total', { priority })).toBe(n);
    }
  });

  it('counts room-limit drops and masked messages', async () => {
    start({ words: ['bad'], wordMode: 'mask', roomRate: 2 });
    const p = new FakeProxyStream();
    await join(p, 1, 'alice');
    for (let i = 0; i < 10; i++) send(p, 1, `low ${i}`, Priority.LOW);
    send(p, 1, 'so bad');
    await chat.settled();
    expect(await value('livemux_chat_messages_dropped_total', { reason: 'room_rate', priority: 'low' })).toBe(chat.stats.dropped.room_rate.low);
    expect(chat.stats.dropped.room_rate.low).toBeGreaterThan(0);
    expect(await value('livemux_chat_messages_masked_total')).toBe(chat.stats.masked);
    expect(await value('livemux_chat_messages_masked_total')).toBe(1);
  });

  it('report rooms, distinct members online and joined sessions', async () => {
    start();
    const p1 = new FakeProxyStream('proxy-1');
    const p2 = new FakeProxyStream('proxy-2');
    await join(p1, 1, 'alice');
    await join(p2, 1, 'alice'); // a second session of the same user
    await join(p1, 2, 'bob');
    await join(p1, 3, 'carol', { room: 'other' });
    expect(await value('livemux_chat_rooms')).toBe(2);
    expect(await value('livemux_chat_members_online')).toBe(3);
    expect(await value('livemux_chat_sessions_joined')).toBe(4);
    await harness.call(p1, 2, { leave: {} });
    expect(await value('livemux_chat_members_online')).toBe(2);
    expect(await value('livemux_chat_sessions_joined')).toBe(3);
  });

  it('count history trims and the gaps served to recovering members', async () => {
    start({ history: { maxLength: 5 } });
    const p = new FakeProxyStream();
    await join(p, 1, 'alice');
    for (let i = 0; i < 12; i++) send(p, 1, `m${i}`);
    await chat.settled();
    expect(await value('livemux_chat_history_trimmed_total')).toBe(7);
    expect(await value('livemux_chat_history_gaps_total')).toBe(0);
    await join(p, 2, 'bob', { sinceSeq: 2 }); // seqs 3..7 are gone
    expect(harness.events(p, 2).find((e) => e.gap)?.gap).toEqual({ fromSeq: 3, toSeq: 7 });
    await join(p, 3, 'carol', { sinceSeq: 9 }); // no gap
    expect(await value('livemux_chat_history_gaps_total')).toBe(1);
  });

  it('count moderation actions by action and result', async () => {
    start();
    const p = new FakeProxyStream();
    await join(p, 1, 'host', { role: 'host' });
    await join(p, 2, 'bob');
    await join(p, 3, 'admin', { role: 'admin' });
    const ok = moderate(p, 1, ModerateAction.MUTE, 'bob');
    const denied = moderate(p, 2, ModerateAction.MUTE, 'host');
    const deniedTarget = moderate(p, 1, ModerateAction.BAN, 'admin');
    const notFound = moderate(p, 1, ModerateAction.KICK, 'nobody');
    moderate(p, 1, ModerateAction.WHITELIST, 'bob');
    await chat.settled();
    expect(harness.replyTo(p, 1, ok).ok).toBe(true);
    expect(harness.replyTo(p, 2, denied).errorCode).toBe(ChatErrorCode.PERMISSION_DENIED);
    expect(harness.replyTo(p, 1, deniedTarget).errorCode).toBe(ChatErrorCode.PERMISSION_DENIED);
    expect(harness.replyTo(p, 1, notFound).errorCode).toBe(ChatErrorCode.NOT_FOUND);
    const actions = 'livemux_chat_moderation_actions_total';
    expect(await value(actions, { action: 'mute', result: 'ok' })).toBe(1);
    expect(await value(actions, { action: 'mute', result: 'permission_denied' })).toBe(1);
    expect(await value(actions, { action: 'ban', result: 'permission_denied' })).toBe(1);
    expect(await value(actions, { action: 'kick', result: 'not_found' })).toBe(1);
    expect(await value(actions, { action: 'whitelist', result: 'ok' })).toBe(1);
    expect(moderationActionName(99)).toBe('unknown');
  });

  it('count requests that failed inside (store errors) by kind', async () => {
    start();
    const p = new FakeProxyStream();
    await join(p, 1, 'alice');
    await chat.store.close(); // every later store call rejects with ERR_STORE_CLOSED
    const reply = await harness.call(p, 1, { send: { body: Buffer.from('x'), clientMsgId: '' } });
    expect(reply.errorCode).toBe(ChatErrorCode.INTERNAL);
    expect(await value('livemux_chat_request_failures_total', { kind: 'send' })).toBe(1);
  });

  it('render in the Prometheus text format under livemux_chat_, without process metrics by default', async () => {
    start();
    const text = await chat.metrics.registry.metrics();
    expect(text).toContain('# TYPE livemux_chat_messages_accepted_total counter');
    expect(text).toContain('livemux_chat_messages_dropped_total{reason="room_rate",priority="low"} 0');
    expect(text).toContain('# TYPE livemux_chat_rooms gauge');
    expect(text).not.toContain('process_cpu');
    for (const line of text.split('\n')) if (line !== '' && !line.startsWith('#')) expect(line).toMatch(/^livemux_chat_/);
  });
});
