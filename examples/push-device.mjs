// A device: the app's always-on push session (docs/push.md). It subscribes to the topics given as
// arguments, then prints every push it receives (each once: the SDK acknowledges and dedupes them).
//
// Run from the repository root, after `npm run build` and with livemux up (`npm start`):
//   node examples/push-device.mjs class:42 city:bj
// then push to it from another terminal (the dev user is "dev-user"):
//   curl -X POST http://127.0.0.1:7180/v1/push -H "Authorization: Bearer $(cat .livemux/push-api-key)" \
//        -H 'content-type: application/json' -d '{"to":{"users":["dev-user"]},"data":"hello"}'
// LIVEMUX_HOST / LIVEMUX_PORT override 127.0.0.1:7000; the token comes from LIVEMUX_TOKEN or
// .livemux/dev-token; LIVEMUX_DEVICE_ID names the device (default "example-device").
import { readFileSync } from 'node:fs';
import { connect, openPush } from 'livemux';

const host = process.env.LIVEMUX_HOST ?? '127.0.0.1';
const port = Number(process.env.LIVEMUX_PORT ?? 7000);
const token = process.env.LIVEMUX_TOKEN ?? readFileSync('.livemux/dev-token', 'utf8').trim();
const deviceId = process.env.LIVEMUX_DEVICE_ID ?? 'example-device';

const client = await connect({ host, port, token });
const push = await openPush(client, { deviceId });
push.on('synced', (backlog, topics) => console.log(`synced: ${backlog} kept while away, topics [${topics.join(', ')}]`));
const topics = process.argv.slice(2);
if (topics.length > 0) console.log(`subscribed: [${(await push.subscribe(topics)).join(', ')}]`);
console.log(`device ${deviceId} of user ${client.welcome.userId} is waiting for pushes (Ctrl-C to stop)`);

process.once('SIGINT', () => void push.close().then(() => client.close()));
for await (const p of push) {
  const to = p.audience === 'topic' ? `topic ${p.topic}` : p.audience;
  console.log(`push ${p.id} (${p.priority}, to ${to}${p.collapseKey ? `, collapse ${p.collapseKey}` : ''}): ${p.data.toString('utf8')}`);
}
