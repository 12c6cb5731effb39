/**
 * A subscription runs its selection once per event, with the one context made when it started. Each event must
 * read the upstream afresh: `fineTuningJobUpdated { events checkpoints metrics }` shows, with every new state of
 * the job, its events as they are then, not those loaded for the first event (per-request loaders and Pothos'
 * loadable caches belong to one event, not to the whole subscription).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { collectWs, createJob, type Gateway, restEvents, startGateway, startUpstream, type Upstream, wsClient } from './helpers.js';

const JOB_WITH_EVENTS = /* GraphQL */ `
  subscription ($id: ID!) {
    fineTuningJobUpdated(id: $id) {
      id
      status
      trainedTokens
      events(first: 3) { edges { node { id message } } }
      metrics { step }
    }
  }
`;

let up: Upstream;
let gw: Gateway;
beforeAll(async () => {
  up = await startUpstream({ stepMs: 150 });
  gw = await startGateway(up, { pollIntervalMs: 100 });
});
afterAll(async () => {
  await gw?.close();
  await up?.close();
});

describe('each subscription event reads the upstream afresh', () => {
  it('fineTuningJobUpdated: the nested events and metrics of each state are the job’s at that state', async () => {
    const jobId = await createJob(up, 2, 20);
    const client = wsClient(gw);
    type State = { status: string; events: { edges: { node: { id: string } }[] }; metrics: { step: number }[] };
    const states = collectWs<State>(client, JOB_WITH_EVENTS, { id: jobId }, 'fineTuningJobUpdated');
    await states.done;
    await client.dispose();
    expect(states.errors).toEqual([]);
    expect(states.items.length).toBeGreaterThan(2);
    const first = states.items[0]!;
    const last = states.items[states.items.length - 1]!;
    expect(last.status).toBe('succeeded'.toUpperCase());
    // The last state's newest events are the job's newest events, not the first state's.
    const rest = await restEvents(up, jobId);
    const newestThree = rest
      .slice(-3)
      .reverse()
      .map((e) => e.id);
    expect(last.events.edges.map((e) => e.node.id)).toEqual(newestThree);
    expect(last.events.edges.map((e) => e.node.id)).not.toEqual(first.events.edges.map((e) => e.node.id));
    expect(last.metrics.length).toBeGreaterThan(first.metrics.length);
  });
});
