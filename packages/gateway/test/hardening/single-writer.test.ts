/**
 * One writer per local database, the gateway's side: `npm start`'s embedded local fine-tuning service refuses a
 * file that a standalone service holds (one line, exit 1), a standalone service refuses the file the gateway's
 * embedded service holds, and `npm start` and `npm run emulator` default to different files, so they run side by
 * side. The services are real child processes (the commands' own entry files) on temp files; the standalone
 * service's own side is in packages/emulator/test/api/single-writer.test.ts.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import {
  assertDatabaseRefusal,
  EMULATOR_ENTRY,
  killEntries,
  runEntry,
  type SpawnedEmulator,
  spawnEmulator,
  startEntry,
} from '@finetune-graphql/emulator/testing';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { startServer } from '../../src/app.js';
import { LOCAL_API_KEY, loadConfig } from '../../src/config.js';
import { ROOT } from '../helpers/processes.js';

const SERVER_ENTRY = resolve(ROOT, 'src/server.ts');

describe('one local service per database file: the gateway', () => {
  const dir = mkdtempSync(join(tmpdir(), 'gw-single-writer-'));
  let holders: SpawnedEmulator[] = [];
  afterEach(async () => {
    for (const h of holders) await h.kill('SIGKILL');
    holders = [];
  });
  afterAll(() => {
    killEntries();
    rmSync(dir, { recursive: true, force: true });
  });

  it("`npm start`'s entry with the embedded service on a file held by a standalone service exits 1 with one line, and the other way round", async () => {
    const dbPath = join(dir, 'gateway.db');
    const standalone = await spawnEmulator({ dbPath, stepMs: 40 });
    holders.push(standalone);
    assertDatabaseRefusal(await runEntry(SERVER_ENTRY, { EMULATOR_DB: dbPath, LOG_LEVEL: 'info' }), dbPath);
    expect((await standalone.client().files.list()).data).toEqual([]);
    await standalone.kill('SIGKILL');

    // The gateway (in this process) holds the file now: the standalone service is refused.
    const gateway = await startServer(loadConfig({ PORT: '0', HOST: '127.0.0.1', EMULATOR_DB: dbPath, EMULATOR_STEP_MS: '40', LOG_LEVEL: 'silent' }));
    try {
      assertDatabaseRefusal(await runEntry(EMULATOR_ENTRY, { EMULATOR_DB: dbPath }), dbPath);
      const res = await fetch(`${gateway.url}/v1/files`, { headers: { authorization: `Bearer ${LOCAL_API_KEY}` } });
      expect(res.status).toBe(200);
    } finally {
      await gateway.close();
    }
    // Closing the gateway let the file go.
    holders.push(await spawnEmulator({ dbPath, stepMs: 40 }));
  });

  it('`npm start` and `npm run emulator` with no EMULATOR_DB use different files and run side by side', async () => {
    const cwd = mkdtempSync(join(dir, 'cwd-'));
    const emulator = await startEntry(cwd, EMULATOR_ENTRY, {}, /listening on (http:\/\/[^\s/]+)\/v1 \(db ([^,]+),/);
    const gateway = await startEntry(cwd, SERVER_ENTRY, {}, /GraphQL API at (http:\/\/[^\s/]+)\/graphql/);
    expect(emulator.match[2]).toBe('./data/emulator.db');
    expect(existsSync(join(cwd, 'data/emulator.db'))).toBe(true);
    expect(existsSync(join(cwd, 'data/embedded.db'))).toBe(true);

    // Two databases: a file uploaded to one service is not in the other.
    const upload = async (base: string, name: string) => {
      const form = new FormData();
      form.append('purpose', 'user_data');
      form.append('file', new Blob(['notes']), name);
      const res = await fetch(`${base}/v1/files`, { method: 'POST', headers: { authorization: `Bearer ${LOCAL_API_KEY}` }, body: form });
      expect(res.status, await res.clone().text()).toBe(200);
    };
    const names = async (base: string) => {
      const res = await fetch(`${base}/v1/files`, { headers: { authorization: `Bearer ${LOCAL_API_KEY}` } });
      return ((await res.json()) as { data: { filename: string }[] }).data.map((f) => f.filename);
    };
    await upload(emulator.match[1]!, 'standalone.txt');
    await upload(gateway.match[1]!, 'embedded.txt');
    expect(await names(emulator.match[1]!)).toEqual(['standalone.txt']);
    expect(await names(gateway.match[1]!)).toEqual(['embedded.txt']);
  });
});
