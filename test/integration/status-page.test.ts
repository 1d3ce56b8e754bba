/**
 * The admin status page in a real headless browser (Debian's chromium, driven by playwright-core)
 * against a live proxy with traffic: it shows the connections, the sessions per business, the backend
 * endpoint with its stream, health and breaker, the routes version, and draws the live rates.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type LivemuxClient } from '../../src/client/index.js';
import { launchChromium } from '../helpers/browser.js';
import { type EchoStack, startEchoStack } from '../helpers/processes.js';

let stack: EchoStack;
let browser: Browser;
let client: LivemuxClient;
let traffic: NodeJS.Timeout;

beforeAll(async () => {
  stack = await startEchoStack();
  browser = await launchChromium();
  client = await connect({ host: '127.0.0.1', port: stack.proxy.port, token: stack.token, reconnect: false });
  const sessions = [await client.open('echo'), await client.open('echo'), await client.open('chat')];
  for (const s of sessions) s.on('data', () => undefined);
  // Steady traffic, so the rates chart has something to draw.
  traffic = setInterval(() => {
    for (const s of sessions) void s.send('tick').catch(() => undefined);
  }, 50);
}, 60_000);

afterAll(async () => {
  clearInterval(traffic);
  await client?.close();
  await browser?.close();
  await stack?.stop();
});

describe('status page', () => {
  it('renders the live proxy in chromium: clients, businesses, endpoints, routes, and a rates chart', async () => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    await page.goto(`http://127.0.0.1:${stack.proxy.adminPort}/`);
    await page.waitForFunction(`document.getElementById('connections')?.textContent === '1'`, undefined, { timeout: 15_000 });
    expect(await page.textContent('#sessions')).toBe('3');
    expect(await page.textContent('#ready')).toBe('ready');
    const businesses = await page.$$eval('#businesses tr', (rows) => rows.slice(1).map((r) => [...r.querySelectorAll('td')].map((td) => td.textContent)));
    expect(businesses).toEqual([
      ['echo', '2'],
      ['chat', '1'],
    ]);
    const endpoint = `127.0.0.1:${stack.backend.port}`;
    const endpoints = await page.$$eval('#endpoints tr', (rows) => rows.slice(1).map((r) => [...r.querySelectorAll('td')].map((td) => td.textContent)));
    expect(endpoints[0]!.slice(0, 4)).toEqual([endpoint, 'ready', 'yes', 'closed']);
    expect(await page.textContent('#routes-version')).toBe('1');

    // The chart: after a few polls, the rate lines have been drawn on the canvas. Echo traffic makes
    // frames out (#c05621, drawn last) cover frames in (#2b6cb0): count the pixels of either.
    // (A string, evaluated in the page: this project's TypeScript has no DOM types.)
    const drawnPixels = (): Promise<number> =>
      page.evaluate(`(() => {
        const c = document.getElementById('chart');
        const { data } = c.getContext('2d').getImageData(0, 0, c.width, c.height);
        let n = 0;
        // Anti-aliasing blends the lines' edges: count pixels close to their colours.
        const near = (i, r, g, b) => Math.abs(data[i] - r) < 40 && Math.abs(data[i + 1] - g) < 40 && Math.abs(data[i + 2] - b) < 40;
        for (let i = 0; i < data.length; i += 4) {
          if (data[i + 3] > 128 && (near(i, 0x2b, 0x6c, 0xb0) || near(i, 0xc0, 0x56, 0x21))) n++;
        }
        return n;
      })()`);
    const deadline = Date.now() + 15_000;
    while ((await drawnPixels()) < 20) {
      if (Date.now() > deadline) throw new Error('the rates chart drew no rate line');
      await page.waitForTimeout(250);
    }

    const png = await page.screenshot({ fullPage: true });
    expect(png.subarray(1, 4).toString()).toBe('PNG');
    expect(png.readUInt32BE(16)).toBe(1280); // IHDR width
    const dir = join(import.meta.dirname, '..', '..', 'test-results');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'status-page.png'), png);
    // The screenshot shows the live figures, not an empty template: the same page before any data
    // arrives renders differently.
    const empty = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    await empty.setContent((await (await fetch(`http://127.0.0.1:${stack.proxy.adminPort}/`)).text()).replace('poll();', ''));
    expect(Buffer.compare(await empty.screenshot({ fullPage: true }), png)).not.toBe(0);
    await empty.close();
    await page.close();
  }, 60_000);
});
