// 1:1 IM between two users in two terminals, through the livemux IM backend (docs/im.md), with the
// SDK's typed ImClient: what you type goes to the other user; what they send (and what you sent from
// other devices) is printed. Messages sent while you are away wait in your inbox and arrive when you
// come back: this terminal keeps its device id and the last inbox seq it processed in .livemux/.
//
// Run from the repository root, with `npm start` up in another terminal:
//   node examples/im-chat.mjs alice bob      # terminal 2
//   node examples/im-chat.mjs bob alice      # terminal 3
// The token is minted with `livemux token --sub <me>` (the dev secret `npm start` keeps in .livemux/);
// LIVEMUX_TOKEN, LIVEMUX_HOST and LIVEMUX_PORT override the token and 127.0.0.1:7000.
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { ImClient, connect } from 'livemux';

const [me, peer] = process.argv.slice(2);
if (!me || !peer) {
  console.error('usage: node examples/im-chat.mjs <me> <peer>   (e.g. alice bob)');
  process.exit(2);
}
const host = process.env.LIVEMUX_HOST ?? '127.0.0.1';
const port = Number(process.env.LIVEMUX_PORT ?? 7000);
const token = process.env.LIVEMUX_TOKEN ?? mintDevToken(me);
// One device id per user on this machine, kept across runs: the inbox keeps this device's cursor.
const deviceId = readState(`im-device-${me}`, () => `example-${randomUUID()}`);
writeState(`im-device-${me}`, deviceId);
const afterSeq = Number(readState(`im-seq-${me}`, () => '0'));

const client = await connect({ host, port, token });
const im = await ImClient.open(client, { deviceId, afterSeq, onInboxSeq: (seq) => writeState(`im-seq-${me}`, String(seq)) });
const unread = im.syncResult.unread.map((u) => `${u.count} from ${u.peer}`).join(', ');
console.log(`${me} on device ${deviceId}: type a line to send it to ${peer}; Ctrl-D to quit.${unread ? ` Unread: ${unread}.` : ''}`);

// Print what arrives; mark messages from the peer read, so their terminal shows the receipt.
void (async () => {
  for await (const event of im) {
    if (event.type === 'message') {
      const m = event.message;
      const text = Buffer.from(m.body).toString('utf8');
      // Your own messages come here only when another of your devices sent them.
      if (m.sender === me) console.log(`  (you, from another device → ${m.recipient}, #${m.convSeq}) ${text}`);
      else {
        console.log(`${m.sender}: ${text}`);
        await im.read(m.sender, m.convSeq).catch(() => undefined);
      }
    } else if (event.type === 'read' && event.receipt.reader !== me) {
      console.log(`  (${event.receipt.reader} read up to #${event.receipt.convSeq})`);
    } else if (event.type === 'recall') {
      console.log(`  (message #${event.recall.convSeq} was recalled)`);
    } else if (event.type === 'gap') {
      console.log(`  (messages ${event.fromSeq}..${event.toSeq} of your inbox expired before this device got them)`);
    }
  }
})();

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (line.trim() === '') continue;
  try {
    const sent = await im.send(peer, line);
    console.log(`  (stored as #${sent.convSeq})`);
  } catch (err) {
    console.log(`  (not sent: ${err.errorCode ?? err.message})`);
  }
}
await im.close();
await client.close();

function readState(name, otherwise) {
  try {
    return readFileSync(`.livemux/${name}`, 'utf8').trim();
  } catch {
    return otherwise();
  }
}

function writeState(name, value) {
  writeFileSync(`.livemux/${name}`, `${value}\n`, { mode: 0o600 });
}

/** A token for `user` from `livemux token` (it fails with a clear message when `npm start` never ran here). */
function mintDevToken(user) {
  try {
    return execFileSync(process.execPath, ['bin/livemux.js', 'token', '--sub', user], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim();
  } catch {
    process.exit(1);
  }
}
