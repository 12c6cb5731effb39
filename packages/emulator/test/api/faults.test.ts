/**
 * Fault injection in the local fine-tuning service (src/faults.ts), seen from a client over HTTP:
 * off by default, each fault kind, route scoping, seeded reproducibility, run-time changes, the
 * Idempotency-Key switch, the environment variable of the standalone service, and that faults never corrupt
 * state (a faulted create either did nothing or completed).
 */
import OpenAI from 'openai';
import { afterEach, describe, expect, it } from 'vitest';
import { faultsFromEnv } from '../../src/env.js';
import { validateFaults } from '../../src/faults.js';
import { createEmulator, type FaultOptions } from '../../src/index.js';
import { type RunningEmulator, spawnEmulator, startEmulator, trainingJsonl, uploadTraining } from '../kit/index.js';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

let up: RunningEmulator | undefined;
afterEach(async () => {
  await up?.close();
  up = undefined;
});

const MODEL = 'gpt-4o-mini-2024-07-18';

async function status(p: Promise<unknown>): Promise<number | string> {
  try {
    await p;
    return 200;
  } catch (err) {
    if (err instanceof OpenAI.APIConnectionTimeoutError) return 'timeout';
    if (err instanceof OpenAI.APIConnectionError) return 'dropped';
    if (err instanceof OpenAI.APIError) return err.status ?? 'error';
    throw err;
  }
}

describe('fault injection in the local service', () => {
  it('is off by default', async () => {
    up = await startEmulator();
    const c = up.client();
    for (let i = 0; i < 30; i++) await c.fineTuning.jobs.list({ limit: 1 });
    expect(up.requests).toHaveLength(30);
    expect(up.requests.every((r) => r.status === 200 && r.fault === undefined)).toBe(true);
    expect(up.emulator.faults).toBeUndefined();
  });

  it('errors (500/502/503) and 429s come before the handler: a faulted create makes nothing', async () => {
    up = await startEmulator();
    const c = up.client();
    const file = await uploadTraining(c);
    up.emulator.setFaults({ errorRate: 1, errorStatuses: [502, 503], seed: 3 });
    const seen = new Set<number | string>();
    for (let i = 0; i < 12; i++) seen.add(await status(c.fineTuning.jobs.create({ model: MODEL, training_file: file })));
    expect([...seen].sort()).toEqual([502, 503]);

    up.emulator.setFaults({ rateLimitRate: 1, retryAfterMs: 1500 });
    const err = (await c.fineTuning.jobs.create({ model: MODEL, training_file: file }).catch((e: unknown) => e)) as InstanceType<typeof OpenAI.APIError>;
    expect(err.status).toBe(429);
    expect(err.headers?.get('retry-after')).toBe('2'); // whole seconds, rounded up
    expect(err.headers?.get('retry-after-ms')).toBe('1500');
    expect(err.code).toBe('rate_limit_exceeded');
    up.emulator.setFaults({ rateLimitRate: 1, retryAfterMs: 1000, retryAfterMsHeader: false });
    const only = (await c.fineTuning.jobs.list().catch((e: unknown) => e)) as InstanceType<typeof OpenAI.APIError>;
    expect(only.headers?.get('retry-after')).toBe('1');
    expect(only.headers?.get('retry-after-ms')).toBeNull();

    up.emulator.setFaults(undefined);
    expect((await c.fineTuning.jobs.list()).data).toEqual([]);
    const creates = up.requests.filter((r) => r.route === 'POST /v1/fine_tuning/jobs');
    expect(creates).toHaveLength(13);
    expect(creates.every((r) => r.fault === 'error' || r.fault === 'rate_limit')).toBe(true);
  });

  it('a dropped connection comes after the handler: the create is done, its response lost', async () => {
    up = await startEmulator();
    const c = up.client();
    const file = await uploadTraining(c);
    up.emulator.setFaults({ dropRate: 1, routes: ['POST /v1/fine_tuning/jobs'] });
    expect(await status(c.fineTuning.jobs.create({ model: MODEL, training_file: file, suffix: 'dropped' }))).toBe('dropped');
    // Other routes are untouched, and the job exists.
    const jobs = (await c.fineTuning.jobs.list()).data;
    expect(jobs.map((j) => (j as unknown as { user_provided_suffix: string }).user_provided_suffix)).toEqual(['dropped']);
    expect(up.requests.find((r) => r.route === 'POST /v1/fine_tuning/jobs')).toMatchObject({ status: 200, fault: 'drop' });

    // Called in-process (no socket), a drop rejects the fetch.
    const inProcess = await Promise.resolve(
      up.emulator.fetch(
        new Request(`${up.baseURL}/fine_tuning/jobs`, {
          method: 'POST',
          headers: { authorization: 'Bearer sk-test-alice', 'content-type': 'application/json' },
          body: JSON.stringify({ model: MODEL, training_file: file, suffix: 'in-process' }),
        }),
      ),
    ).then(
      () => 'answered',
      (e: Error) => e.name,
    );
    expect(inProcess).toBe('ConnectionDropped');
    expect((await c.fineTuning.jobs.list()).data).toHaveLength(2);
  });

  it('a hang holds the request until the client gives up; turning faults off releases held requests', async () => {
    up = await startEmulator();
    const c = up.client();
    up.emulator.setFaults({ hangRate: 1 });
    const t0 = Date.now();
    expect(await status(c.fineTuning.jobs.list({}, { timeout: 300 }))).toBe('timeout');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(290);
    await sleep(50);
    expect(up.requests.at(-1)).toMatchObject({ route: 'GET /v1/fine_tuning/jobs', status: 0, fault: 'hang' });

    const held = status(c.fineTuning.jobs.list({}, { timeout: 10_000 }));
    await sleep(100);
    const t1 = Date.now();
    up.emulator.setFaults(undefined);
    expect(await held).toBe('dropped');
    expect(Date.now() - t1).toBeLessThan(1000);
    expect(await status(c.fineTuning.jobs.list())).toBe(200);
  });

  it('adds latency (fixed + jitter) and scopes faults to routes', async () => {
    up = await startEmulator();
    const c = up.client();
    up.emulator.setFaults({ latencyMs: 150, jitterMs: 100, routes: ['GET /v1/fine_tuning/jobs'] });
    const times: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t0 = Date.now();
      await c.fineTuning.jobs.list();
      times.push(Date.now() - t0);
    }
    expect(Math.min(...times)).toBeGreaterThanOrEqual(148);
    expect(Math.max(...times)).toBeLessThan(600);
    const t0 = Date.now();
    await c.files.list();
    expect(Date.now() - t0).toBeLessThan(140);

    up.emulator.setFaults({ errorRate: 1, routes: ['GET /v1/fine_tuning/jobs/:id'] });
    expect(await status(c.fineTuning.jobs.list())).toBe(200);
    expect(await status(c.fineTuning.jobs.retrieve('ftjob-nope'))).toBeGreaterThanOrEqual(500);
    expect(await status(c.fineTuning.jobs.listEvents('ftjob-nope'))).toBe(404); // ":id" is one segment
    up.emulator.setFaults({ errorRate: 1, routes: ['GET'] });
    expect(await status(c.files.list())).toBeGreaterThanOrEqual(500);
    expect(await status(c.files.create({ file: await OpenAI.toFile(Buffer.from(trainingJsonl(12)), 'a.jsonl'), purpose: 'fine-tune' }))).toBe(200);
    up.emulator.setFaults({ errorRate: 1, routes: ['* /v1/files/*'] });
    expect(await status(c.files.list())).toBeGreaterThanOrEqual(500);
    expect(await status(c.fineTuning.jobs.list())).toBe(200);
  });

  it('a seeded run is reproducible, and the rates hold', async () => {
    const faults: FaultOptions = { errorRate: 0.15, rateLimitRate: 0.05, dropRate: 0.05, seed: 42, retryAfterMs: 10 };
    const run = async (seed: number) => {
      const emu = createEmulator({ dbPath: ':memory:', stepMs: 10, faults: { ...faults, seed } });
      const outcomes: string[] = [];
      for (let i = 0; i < 1000; i++) {
        try {
          const res = await emu.fetch(new Request('http://local/v1/files', { headers: { authorization: 'Bearer sk-seed' } }));
          outcomes.push(String(res.status));
        } catch {
          outcomes.push('drop');
        }
      }
      await emu.close();
      return outcomes;
    };
    const a = await run(42);
    const b = await run(42);
    const other = await run(43);
    expect(a).toEqual(b);
    expect(other).not.toEqual(a);
    const share = (what: (o: string) => boolean) => a.filter(what).length / a.length;
    expect(share((o) => o.startsWith('5'))).toBeGreaterThan(0.1);
    expect(share((o) => o.startsWith('5'))).toBeLessThan(0.2);
    expect(share((o) => o === '429')).toBeGreaterThan(0.025);
    expect(share((o) => o === '429')).toBeLessThan(0.075);
    expect(share((o) => o === 'drop')).toBeGreaterThan(0.025);
    expect(share((o) => o === 'drop')).toBeLessThan(0.075);
    expect(new Set(a.filter((o) => o.startsWith('5')))).toEqual(new Set(['500', '502', '503']));
  });

  it('rejects bad options with a message naming the option', () => {
    expect(() => validateFaults({ errorRate: 1.5 })).toThrow(/faults\.errorRate must be a number between 0 and 1/);
    expect(() => validateFaults({ errorRate: 0.6, dropRate: 0.6 })).toThrow(/at most 1/);
    expect(() => validateFaults({ errorRat: 0.1 })).toThrow(/faults\.errorRat is not a known fault option/);
    expect(() => validateFaults({ errorStatuses: [404] })).toThrow(/errorStatuses/);
    expect(() => validateFaults({ routes: ['GET jobs'] })).toThrow(/must start with \//);
    expect(() => validateFaults({ seed: 1.5 })).toThrow(/seed/);
    expect(() => faultsFromEnv('{errorRate')).toThrow(/EMULATOR_FAULTS must be a JSON object/);
    expect(() => faultsFromEnv('{"latencyMs":-1}')).toThrow(/EMULATOR_FAULTS: faults\.latencyMs/);
    expect(faultsFromEnv('')).toBeUndefined();
    expect(() => createEmulator({ dbPath: ':memory:', faults: { hangRate: 2 } })).toThrow(/hangRate/);
  });

  it('honourIdempotencyKeys: false ignores Idempotency-Key (the default honours it)', async () => {
    const withKey = { headers: { 'Idempotency-Key': 'same-key' } };
    for (const honour of [true, false]) {
      up = await startEmulator({ honourIdempotencyKeys: honour });
      const c = up.client();
      const file = await uploadTraining(c);
      const a = await c.fineTuning.jobs.create({ model: MODEL, training_file: file }, withKey);
      const b = await c.fineTuning.jobs.create({ model: MODEL, training_file: file }, withKey);
      expect(a.id === b.id).toBe(honour);
      expect((await c.fineTuning.jobs.list()).data).toHaveLength(honour ? 1 : 2);
      await up.close();
      up = undefined;
    }
  });

  it('the standalone service reads EMULATOR_FAULTS', async () => {
    const previous = process.env.EMULATOR_FAULTS;
    process.env.EMULATOR_FAULTS = JSON.stringify({ errorRate: 1, errorStatuses: [503], routes: ['GET *'] });
    let svc: Awaited<ReturnType<typeof spawnEmulator>> | undefined;
    try {
      svc = await spawnEmulator({ dbPath: ':memory:', stepMs: 10 });
    } finally {
      if (previous === undefined) delete process.env.EMULATOR_FAULTS;
      else process.env.EMULATOR_FAULTS = previous;
    }
    try {
      expect(svc.output()).toMatch(/faults: errorRate=1 routes=GET \*/);
      const c = svc.client();
      expect(await status(c.files.list())).toBe(503);
      expect(await status(uploadTraining(c))).toBe(200);
    } finally {
      expect((await svc.kill('SIGTERM')).code).toBe(0);
    }
  });
});
