/**
 * GraphiQL in a real headless browser (Debian's chromium driven by playwright-core; no browser is
 * ever downloaded): it runs a query, then a subscription over the graphql-ws websocket, and the
 * result pane shows live events as they arrive.
 *
 * The server renders GraphiQL with its scripts and styles inlined (@graphql-yoga/render-graphiql), so the
 * page needs no network: every request that would leave 127.0.0.1 is refused and recorded, and the test
 * requires that there were none.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type BrowserContext, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createJob, type Gateway, sleep, startGateway, startUpstream, type Upstream, waitUntil } from '../live/helpers.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const SCREENSHOT_DIR = mkdtempSync(join(tmpdir(), 'graphiql-shots-'));

let up: Upstream;
let gw: Gateway;
let context: BrowserContext | undefined;
let userDataDir: string;

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: .ci/run installs Debian's chromium with apt-get`);
  up = await startUpstream({ stepMs: 120 });
  gw = await startGateway(up, { pollIntervalMs: 100 });
  userDataDir = mkdtempSync(join(tmpdir(), 'graphiql-chromium-'));
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--headless',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    viewport: { width: 1400, height: 900 },
  });
});

afterAll(async () => {
  await context?.close();
  await gw?.close();
  await up?.close();
  if (userDataDir) rmSync(userDataDir, { recursive: true, force: true });
});

async function openPage(): Promise<{ page: Page; outside: string[]; sockets: string[] }> {
  const page = await context!.newPage();
  const outside: string[] = [];
  const sockets: string[] = [];
  page.on('websocket', (ws) => sockets.push(ws.url()));
  await page.route('**/*', async (route) => {
    const url = route.request().url();
    if (url.startsWith('http://127.0.0.1:') || url.startsWith('blob:') || url.startsWith('data:')) return route.continue();
    outside.push(url);
    return route.abort();
  });
  return { page, outside, sockets };
}

/** Opens GraphiQL with `query` in its editor (the `?query=` parameter) and presses the run button. */
async function runInGraphiQL(page: Page, query: string) {
  const params = new URLSearchParams({ query });
  await page.goto(`${gw.url}/graphql?${params}`, { waitUntil: 'load' });
  const run = page.locator('.graphiql-execute-button');
  await run.waitFor({ state: 'visible', timeout: 30_000 });
  // The schema must be loaded (introspection) before a run is meaningful.
  await page.waitForFunction(() => document.querySelector('.graphiql-query-editor')?.textContent?.includes('fineTuning'), null, {
    timeout: 30_000,
  });
  await run.click();
}

/** The result pane's text (Monaco renders spaces as non-breaking spaces). */
const resultText = async (page: Page) => (await page.locator('.result-window').innerText()).replace(/\u00a0/g, ' ');

describe('GraphiQL', () => {
  it('runs a query, then a subscription over the websocket, and shows live events', async () => {
    const jobId = await createJob(up, 3);
    const { page, outside, sockets } = await openPage();

    // A query.
    // (Literal arguments: GraphiQL ignores a `variables` URL parameter when the server sets default tabs.)
    await runInGraphiQL(page, `query Job { fineTuningJob(id: "${jobId}") { id status model } }`);
    await waitUntil(async () => (await resultText(page)).includes(jobId), 20_000, 100);
    expect(await resultText(page)).toMatch(/"status": "(VALIDATING_FILES|QUEUED|RUNNING)"/);
    await page.screenshot({ path: join(SCREENSHOT_DIR, '1-query.png') });

    // A subscription: the result pane changes as events arrive.
    await runInGraphiQL(page, `subscription Events { fineTuningJobEvents(jobId: "${jobId}") { id createdAt message } }`);
    const seen = new Set<string>();
    const messages: string[] = [];
    const deadline = Date.now() + 30_000;
    while (seen.size < 3 && Date.now() < deadline) {
      const text = await resultText(page);
      const id = /"id": "(ftevent-[^"]+)"/.exec(text)?.[1];
      if (id && !seen.has(id)) {
        seen.add(id);
        messages.push(/"message": "([^"]*)"/.exec(text)?.[1] ?? '');
        if (seen.size === 2) await page.screenshot({ path: join(SCREENSHOT_DIR, '2-subscription.png') });
      }
      await sleep(50);
    }
    expect(seen.size).toBeGreaterThanOrEqual(3);
    expect(messages.join('\n')).toMatch(/Step \d+\/\d+|Fine-tuning job started|validated|queued/i);
    // GraphiQL used the graphql-ws websocket on /graphql, and the server had a live subscriber.
    expect(sockets.some((u) => u === `${gw.wsUrl}`)).toBe(true);
    expect(gw.live.stats().subscribers).toBeGreaterThanOrEqual(1);
    // Nothing was fetched from outside 127.0.0.1: the page works offline.
    expect(outside).toEqual([]);
    console.log(`GraphiQL screenshots in ${SCREENSHOT_DIR}`);

    await page.close();
    await waitUntil(() => gw.live.stats().pollers === 0, 5000);
  });
});
