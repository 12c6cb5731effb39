import type OpenAI from 'openai';
import type { FineTuningJob, FineTuningJobEvent } from 'openai/resources/fine-tuning/jobs/jobs';
import type { LiveUpstream } from './types.js';

export interface OpenAiLiveUpstreamOptions {
  /** Timeout of one poll request, in ms. Default 10000. */
  timeoutMs?: number;
}

/**
 * Adapts an `openai` SDK client (one per credential) to the two reads a poller makes. The SDK's
 * own retries are turned off for polls: the poller has its own back-off with jitter and must stay
 * in control of how often the upstream is called.
 */
export function openAiLiveUpstream(client: OpenAI, options: OpenAiLiveUpstreamOptions = {}): LiveUpstream<FineTuningJob, FineTuningJobEvent> {
  const requestOptions = { maxRetries: 0, timeout: options.timeoutMs ?? 10_000 };
  return {
    retrieveJob: (jobId) => client.fineTuning.jobs.retrieve(jobId, requestOptions),
    async listEvents(jobId, query) {
      const page = await client.fineTuning.jobs.listEvents(jobId, query, requestOptions);
      return { data: page.data, has_more: page.has_more };
    },
  };
}
