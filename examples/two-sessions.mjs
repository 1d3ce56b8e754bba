// Two sessions on ONE livemux connection: `echo` (metadata room_id=42), which answers with the message
// sent, and `chat` in room "lobby", which speaks the Chat protocol (docs/chat.md): join the room, send a
// message, and receive it back as a room message with its sequence number.
//
// Run from the repository root, after `npm run build` and with a proxy up (`npx livemux up`):
//   node examples/two-sessions.mjs
// LIVEMUX_HOST / LIVEMUX_PORT override 127.0.0.1:7000; the token comes from LIVEMUX_TOKEN, or from
// .livemux/dev-token, which `livemux up` writes.
import { readFileSync } from 'node:fs';
import { connect, decodeChatEvent, encodeChatRequest } from 'livemux';

const host = process.env.LIVEMUX_HOST ?? '127.0.0.1';
const port = Number(process.env.LIVEMUX_PORT ?? 7000);
const token = process.env.LIVEMUX_TOKEN ?? readDevToken();

// An example should fail loudly, not retry forever: reconnect is off.
const client = await connect({ host, port, token, reconnect: false });
const { connectionId, userId } = client.welcome;
console.log(`connected: connection ${connectionId}, user ${userId}`);

const echo = await client.open('echo', { room_id: '42' });
const chat = await client.open('chat', { room_id: 'lobby' });

// Both run at the same time over the same connection.
const replies = await Promise.all([echoRoundTrip(echo, 'hello from the echo session'), chatRoundTrip(chat, 'hello from the chat session')]);
for (const { session, text } of replies) {
  console.log(`connection ${connectionId} session ${session.id} (${session.business}): ${text}`);
}

// Graceful: each close resolves when the proxy answers with its own CLOSE.
await Promise.all([echo.close(), chat.close()]);
await client.close();
console.log('closed');

/** Sends `text` and waits for the first message back on the same session. */
async function echoRoundTrip(session, text) {
  await session.send(text);
  for await (const { payload } of session) {
    // Leaving the loop stops iterating; it does not close the session.
    return { session, text: payload.toString('utf8') };
  }
  throw new Error(`session ${session.id} closed before replying`);
}

/**
 * Joins the room (the latest messages come first, as history), sends `text`, and waits for it to come
 * back as a room message, recognised by its client_msg_id.
 */
async function chatRoundTrip(session, text) {
  const clientMsgId = `example-${process.pid}-${Date.now()}`;
  await session.send(encodeChatRequest({ requestId: 1, join: {} }));
  await session.send(encodeChatRequest({ requestId: 2, send: { body: Buffer.from(text), clientMsgId } }));
  for await (const { payload } of session) {
    const event = decodeChatEvent(payload);
    if (event.reply && !event.reply.ok) throw new Error(`chat: ${event.reply.errorCode} ${event.reply.errorMessage}`);
    const m = event.message;
    if (m?.clientMsgId === clientMsgId) return { session, text: `#${m.seq} from ${m.senderId}: ${Buffer.from(m.body).toString('utf8')}` };
  }
  throw new Error(`session ${session.id} closed before the message came back`);
}

function readDevToken() {
  try {
    return readFileSync('.livemux/dev-token', 'utf8').trim();
  } catch {
    console.error('no token: set LIVEMUX_TOKEN, or run `npx livemux up` in this directory first');
    process.exit(1);
  }
}
