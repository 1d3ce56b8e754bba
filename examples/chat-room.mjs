// A terminal chat room on the Chat backend (docs/chat.md): each line you type is sent to the room;
// everything the room says is printed. Run it twice, as two users, to watch them talk:
//
//   node examples/chat-room.mjs lobby                                         # as dev-user
//   LIVEMUX_TOKEN=$(npx livemux token --sub bob) node examples/chat-room.mjs lobby   # as bob
//
// Run from the repository root with `npm start` running. LIVEMUX_HOST / LIVEMUX_PORT override
// 127.0.0.1:7000; the token comes from LIVEMUX_TOKEN, or from .livemux/dev-token (`npm start` writes it).
// Ctrl-D leaves the room.
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { connect } from 'livemux/client';
import { decodeChatEvent, encodeChatRequest } from 'livemux';

const room = process.argv[2] ?? 'lobby';
const host = process.env.LIVEMUX_HOST ?? '127.0.0.1';
const port = Number(process.env.LIVEMUX_PORT ?? 7000);
const token = process.env.LIVEMUX_TOKEN ?? readDevToken();

const client = await connect({ host, port, token, reconnect: false });
const me = client.welcome.userId;
// The chat route hashes on room_id, so every member of a room reaches the same backend.
const session = await client.open('chat', { room_id: room });
let requestId = 0;
const request = (body) => session.send(encodeChatRequest({ requestId: ++requestId, ...body }));

session.on('data', (payload) => {
  const e = decodeChatEvent(payload);
  if (e.joined) console.log(`* you are ${me} in "${room}" with ${e.joined.onlineCount - 1} other(s); type to talk, Ctrl-D to leave`);
  else if (e.message) console.log(`${e.message.senderId}: ${Buffer.from(e.message.body).toString('utf8')}`);
  else if (e.memberJoined) console.log(`* ${e.memberJoined.userId} joined (${e.memberJoined.onlineCount} online)`);
  else if (e.memberLeft) console.log(`* ${e.memberLeft.userId} left (${e.memberLeft.onlineCount} online)`);
  else if (e.reply && !e.reply.ok) console.log(`* refused: ${e.reply.errorCode} ${e.reply.errorMessage}`);
});
session.on('close', (code, reason) => console.log(`* session closed (${code}${reason ? ` ${reason}` : ''})`));

// Join first: the room's latest messages arrive as history, then Joined.
await request({ join: {} });
for await (const line of createInterface({ input: process.stdin })) {
  if (line.trim() !== '') await request({ send: { body: Buffer.from(line), clientMsgId: `${me}-${Date.now()}` } });
}
await session.close();
await client.close();

function readDevToken() {
  try {
    return readFileSync('.livemux/dev-token', 'utf8').trim();
  } catch {
    console.error('no token: set LIVEMUX_TOKEN, or run `npm start` in this directory first');
    process.exit(1);
  }
}
