// Two sessions on ONE livemux connection: `echo` (metadata room_id=42) and `chat`. The default
// routes.yaml sends both to the echo backend, so each reply is the message sent on that session.
//
// Run from the repository root, after `npm run build` and with a proxy up (`npx livemux up`):
//   node examples/two-sessions.mjs
// LIVEMUX_HOST / LIVEMUX_PORT override 127.0.0.1:7000; the token comes from LIVEMUX_TOKEN, or from
// .livemux/dev-token, which `livemux up` writes.
import { readFileSync } from 'node:fs';
import { connect } from 'livemux';

const host = process.env.LIVEMUX_HOST ?? '127.0.0.1';
const port = Number(process.env.LIVEMUX_PORT ?? 7000);
const token = process.env.LIVEMUX_TOKEN ?? readDevToken();

// An example should fail loudly, not retry forever: reconnect is off.
const client = await connect({ host, port, token, reconnect: false });
const { connectionId, userId } = client.welcome;
console.log(`connected: connection ${connectionId}, user ${userId}`);

const echo = await client.open('echo', { room_id: '42' });
const chat = await client.open('chat');

// Both round trips run at the same time over the same connection.
const replies = await Promise.all([
  roundTrip(echo, 'hello from the echo session'),
  roundTrip(chat, 'hello from the chat session'),
]);
for (const { session, text } of replies) {
  console.log(`connection ${connectionId} session ${session.id} (${session.business}): ${text}`);
}

// Graceful: each close resolves when the proxy answers with its own CLOSE.
await Promise.all([echo.close(), chat.close()]);
await client.close();
console.log('closed');

/** Sends `text` and waits for the first message back on the same session. */
async function roundTrip(session, text) {
  await session.send(text);
  for await (const { payload } of session) {
    // Leaving the loop stops iterating; it does not close the session.
    return { session, text: payload.toString('utf8') };
  }
  throw new Error(`session ${session.id} closed before replying`);
}

function readDevToken() {
  try {
    return readFileSync('.livemux/dev-token', 'utf8').trim();
  } catch {
    console.error('no token: set LIVEMUX_TOKEN, or run `npx livemux up` in this directory first');
    process.exit(1);
  }
}
