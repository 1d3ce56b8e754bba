/**
 * The conformance kit (PROTOCOL.md §14): the TypeScript SDK, driven as §14 says, passes every scenario;
 * clients that break a rule fail the scenario that checks it, with a reason that names the rule; and
 * `livemux conformance-server` runs as a command.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ConformanceServer, type Verdict } from '../../src/conformance/server.js';
import { SCENARIOS } from '../../src/conformance/scenarios.js';
import { runScenarios } from '../../src/conformance/driver.js';
import { FrameType } from '../../src/protocol/constants.js';
import { encodeFrame } from '../../src/protocol/encoder.js';
import { encodeHello, encodeOpen } from '../../src/protocol/messages.js';
import { RawClient } from '../helpers/raw-client.js';
import { runLivemux } from '../helpers/processes.js';

const servers: ConformanceServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function serve(scenarios: string[] = []): Promise<ConformanceServer> {
  const server = await ConformanceServer.start({ scenarios });
  servers.push(server);
  return server;
}

function verdict(server: ConformanceServer, scenario: string): Promise<Verdict> {
  return new Promise((resolve) => {
    const poll = setInterval(() => {
      const v = server.verdicts.get(scenario);
      if (v) {
        clearInterval(poll);
        resolve(v);
      }
    }, 20);
  });
}

describe('the TypeScript SDK against the conformance kit', () => {
  it('passes every scenario', async () => {
    const server = await serve();
    await runScenarios(server.scenarios, { ...server.address, concurrency: 6 });
    await server.done;
    const failed = [...server.verdicts.values()].filter((v) => !v.passed).map((v) => `${v.scenario}: ${v.detail}`);
    expect(failed).toEqual([]);
    expect(server.verdicts.size).toBe(SCENARIOS.length);
  }, 120_000);
});

/** A raw client that says HELLO for `scenario` and then does only what the test makes it do. */
async function rawFor(server: ConformanceServer, scenario: string, versions = [1]): Promise<RawClient> {
  const c = await RawClient.connect(server.address.port);
  c.send(encodeFrame(FrameType.HELLO, 0, 0, encodeHello({ versions, token: `conformance:${scenario}` })));
  return c;
}

/** OPEN of the driver's business once WELCOME is in, then waits for OPEN_OK. */
async function openSession(c: RawClient): Promise<void> {
  await c.next(FrameType.WELCOME);
  c.send(encodeFrame(FrameType.OPEN, 0, 1, encodeOpen({ business: 'conformance', metadata: {} })));
  await c.next(FrameType.OPEN_OK, 1);
}

describe('clients that break a rule fail the scenario that checks it', () => {
  it('a HELLO without version 1 fails handshake', async () => {
    const server = await serve(['handshake']);
    await rawFor(server, 'handshake', [2]);
    expect((await verdict(server, 'handshake')).detail).toMatch(/lack version 1/);
  });

  it('a client that does not answer PING fails vectors-valid', async () => {
    const server = await serve(['vectors-valid']);
    const c = await rawFor(server, 'vectors-valid');
    await openSession(c);
    const v = await verdict(server, 'vectors-valid');
    expect(v.passed).toBe(false);
    expect(v.detail).toMatch(/PONG/);
    c.destroy();
  });

  it('a client that never pings fails heartbeat-client-pings', async () => {
    const server = await serve(['heartbeat-client-pings']);
    const c = await rawFor(server, 'heartbeat-client-pings');
    await openSession(c);
    expect((await verdict(server, 'heartbeat-client-pings')).detail).toMatch(/expected a PING after 1000 ms of silence/);
    c.destroy();
  });

  it('a client that sends past its window fails flow-respects-window', async () => {
    const server = await serve(['flow-respects-window']);
    const c = await rawFor(server, 'flow-respects-window');
    await openSession(c);
    // Echo everything at once, credit or not.
    for (let i = 0; i < 6; i++) {
      const f = await c.next(FrameType.DATA, 1);
      c.send(encodeFrame(FrameType.DATA, 1, 1, f.payload));
    }
    expect((await verdict(server, 'flow-respects-window')).detail).toMatch(/no DATA beyond the 1024-byte session window/);
    c.destroy();
  });

  it('a client that answers a server CLOSE with RESET fails half-close-server-first', async () => {
    const server = await serve(['half-close-server-first']);
    const c = await rawFor(server, 'half-close-server-first');
    await openSession(c);
    await c.next(FrameType.CLOSE, 1);
    c.reset(1);
    expect((await verdict(server, 'half-close-server-first')).detail).toMatch(/RESET CANCELLED \(207\) on session 1 where a CLOSE answers/);
    c.destroy();
  });

  it('a client that accepts a bad header fails its invalid-header scenario', async () => {
    const server = await serve(['invalid-header-bad-magic']);
    const c = await rawFor(server, 'invalid-header-bad-magic');
    await openSession(c);
    expect((await verdict(server, 'invalid-header-bad-magic')).detail).toMatch(/expected ERROR BAD_MAGIC/);
    c.destroy();
  });
});

describe('livemux conformance-server', () => {
  it('lists its scenarios, and with --self-test plays them against the TypeScript SDK and exits 0', async () => {
    const list = runLivemux(['conformance-server', '--list']);
    expect(await list.exited).toBe(0);
    expect(list.lines.map((l) => l.scenario)).toEqual(SCENARIOS.map((s) => s.name));

    const run = runLivemux(['conformance-server', '--port', '0', '--self-test', '--scenario', 'handshake,vectors-valid,half-close-client-first']);
    const summary = await run.waitFor((l) => l.event === 'summary', 30_000);
    expect(summary).toMatchObject({ passed: 3, failed: [], total: 3 });
    expect(await run.exited).toBe(0);
  });
});
