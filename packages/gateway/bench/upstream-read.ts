/**
 * `npm run bench:upstream-read`: what one upstream read costs the gateway's thread, by way of doing it.
 *
 *   bare     undici `request` on a keep-alive pool + JSON.parse: the least a Node client spends;
 *   lean     the gateway's reads (UpstreamApi.retrieveJob: retry/budget wrapper, lean GET, SDK error classes);
 *   sdk      the same GET through the official SDK (`client.fineTuning.jobs.retrieve`) over the same pool.
 *
 * The local service runs on a worker thread; the figure is the main thread's CPU time per call (from /proc), which
 * other load on the machine disturbs far less than calls/s. 32 calls in flight; each variant runs ROUNDS times,
 * interleaved, and the median is printed with its ratio to `bare`.
 */
import OpenAI, { toFile } from 'openai';
import { Agent } from 'undici';
import { Upstream } from '../src/upstream/client.js';
import { mainThreadCpuMs, startUpstreamWorker } from './lib/threads.js';

const CALLS = Number(process.env.BENCH_CALLS ?? 15_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const KEY = 'sk-bench';

async function cpuPerCall(fn: () => Promise<unknown>): Promise<number> {
  let started = 0;
  const c0 = mainThreadCpuMs();
  await Promise.all(
    Array.from({ length: 32 }, async () => {
      while (started++ < CALLS) await fn();
    }),
  );
  return ((mainThreadCpuMs() - c0) * 1000) / CALLS;
}

const upstreamWorker = await startUpstreamWorker(200);
const { port } = upstreamWorker;
const baseURL = `${upstreamWorker.url}/v1`;
const rest = new OpenAI({ apiKey: KEY, baseURL, maxRetries: 0 });
const file = await rest.files.create({
  file: await toFile(
    Buffer.from(
      `${JSON.stringify({
        messages: [
          { role: 'user', content: 'hi' },
          { role: 'assistant', content: 'hello' },
        ],
      })}\n`,
    ),
    'a.jsonl',
  ),
  purpose: 'fine-tune',
});
const job = await rest.fineTuning.jobs.create({ model: 'gpt-4o-mini-2024-07-18', training_file: file.id });

const agent = new Agent({ connections: 64 });
// No finished-job cache: every call goes out.
const upstream = new Upstream({ baseURL, finishedJobCacheSize: 0 });
const api = upstream.forCredential(KEY);
const variants: Record<string, () => Promise<unknown>> = {
  bare: async () => {
    const res = await agent.request({
      origin: `http://127.0.0.1:${port}`,
      path: `/v1/fine_tuning/jobs/${job.id}`,
      method: 'GET',
      headers: { authorization: `Bearer ${KEY}` },
    });
    return JSON.parse(await res.body.text());
  },
  lean: () => api.retrieveJob(job.id),
  sdk: () => api.client!.fineTuning.jobs.retrieve(job.id, { maxRetries: 0 }),
};
const results: Record<string, number[]> = {};
for (const fn of Object.values(variants)) await cpuPerCall(fn); // warm-up
for (let round = 0; round < ROUNDS; round++) {
  for (const [name, fn] of Object.entries(variants)) (results[name] ??= []).push(await cpuPerCall(fn));
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
console.log(`main-thread CPU per upstream read (GET a job), ${CALLS} calls × ${ROUNDS} rounds, 32 in flight; median (all rounds)`);
for (const [name, xs] of Object.entries(results)) {
  console.log(
    `  ${name.padEnd(5)} ${median(xs).toFixed(0).padStart(4)} µs   ×${(median(xs) / median(results.bare!)).toFixed(2)} bare   (${xs.map((x) => x.toFixed(0)).join(', ')})`,
  );
}
await upstream.close();
await agent.close();
await upstreamWorker.close();
