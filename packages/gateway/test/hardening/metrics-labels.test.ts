/**
 * Issue 10, finding 12: client-chosen operation names cannot take every metrics label slot for good. The first
 * 260 names a prober sends fill the 200 slots; the example operations' names (FollowJob, …) keep their label
 * anyway, and after the window (METRICS_LABEL_WINDOW_MS) the busiest names of the last window hold the slots:
 * a dashboard's busy operation gets its own series, the probes' series are removed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEmulator, type RunningEmulator } from '@finetune-graphql/emulator/testing';
import { type ApiHandle, startApi } from '../helpers/server.js';

let emu: RunningEmulator;
let api: ApiHandle;
beforeAll(async () => {
  emu = await startEmulator();
  api = await startApi({ baseURL: emu.baseURL, env: { METRICS_LABEL_WINDOW_MS: '6000', RATE_LIMIT_PER_MINUTE: '0', LOG_LEVEL: 'warn' } });
});
afterAll(async () => {
  await api?.close();
  await emu?.close();
});

const query = (name: string) => api.gql(`query ${name} { fineTuningJobs(first: 1) { edges { node { id } } } }`);

async function operationNames(): Promise<Map<string, number>> {
  const text = await (await fetch(`${api.url}/metrics`)).text();
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^ftgql_graphql_operations_total\{[^}]*operationName="([^"]*)"[^}]*\} (\d+)/.exec(line);
    if (m) out.set(m[1]!, (out.get(m[1]!) ?? 0) + Number(m[2]));
  }
  return out;
}

describe('operation-name labels', () => {
  it('keep the examples’ names and the busiest names, not the first 200', async () => {
    const started = Date.now();
    for (let i = 0; i < 260; i += 20) await Promise.all(Array.from({ length: 20 }, (_, j) => query(`Probe${i + j}`)));
    for (let i = 0; i < 30; i++) await query('BusyDashboard');
    await query('FollowJob');
    let names = await operationNames();
    // All of the above in the first window (else the slots were already chosen again).
    expect(Date.now() - started).toBeLessThan(6_000);
    expect(names.size).toBeLessThanOrEqual(200 + 2); // the slots, FollowJob, other
    expect(names.get('FollowJob')).toBe(1);
    expect(names.get('BusyDashboard')).toBeUndefined(); // counted as other for now
    expect(names.get('other')).toBeGreaterThanOrEqual(60 + 30);

    await new Promise((r) => setTimeout(r, Math.max(0, started + 6_100 - Date.now()))); // the window ends
    await query('BusyDashboard');
    names = await operationNames();
    expect(names.get('BusyDashboard')).toBe(1);
    // The probes (one use each, fewer than the busy name) lost their series, except those the slots still hold.
    const probes = [...names.keys()].filter((n) => n.startsWith('Probe'));
    expect(probes.length).toBeLessThanOrEqual(199);
    expect(names.get('FollowJob')).toBe(1);
  });
});
