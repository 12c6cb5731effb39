export { JobWatchRegistry, DEFAULT_LIVE_OPTIONS, liveOptionsFromEnv, credentialHash, watchKey } from './registry.js';
export type { LiveEventTarget, LiveJobs, LivePubSub, LiveTopics } from './registry.js';
export { LiveFailure, isLiveFailure, classifyUpstreamError } from './errors.js';
export { openAiLiveUpstream } from './upstream.js';
export { isTerminal, stableStringify } from './poller.js';
export type * from './types.js';
