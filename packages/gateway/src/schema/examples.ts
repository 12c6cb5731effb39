/**
 * Example operations: GraphiQL opens with them (one tab each) and `npm run schema:print` writes them to
 * docs/examples.graphql for the README. Upload → create → follow a job.
 */
import { LOCAL_API_KEY } from '../config.js';

export interface Example {
  title: string;
  query: string;
  variables?: Record<string, unknown>;
}

export const EXAMPLES: Example[] = [
  {
    title: '1. Upload a training file',
    query: `# 1. Upload a JSONL training file (at least 10 chat examples) with the GraphQL multipart request spec.
#    GraphiQL cannot attach files; from a shell:
#
#    curl http://127.0.0.1:4000/graphql \\
#      -H 'GraphQL-Require-Preflight: true' \\
#      -F operations='{"query":"mutation ($file: Upload!) { uploadFile(file: $file, purpose: FINE_TUNE) { __typename ... on UploadFileSuccess { file { id filename bytes } } ... on Error { message } } }","variables":{"file":null}}' \\
#      -F map='{"0":["variables.file"]}' \\
#      -F 0=@train.jsonl
#
#    Then list your files here:
query Files {
  files(first: 10, purpose: FINE_TUNE) {
    edges { node { id filename bytes createdAt purpose } }
    pageInfo { hasNextPage endCursor }
  }
}
`,
  },
  {
    title: '2. Create a fine-tuning job',
    query: `# 2. Create a job from the uploaded file (paste its id into the variables below).
mutation CreateJob($trainingFile: ID!) {
  createFineTuningJob(
    input: {
      model: "gpt-4o-mini-2024-07-18"
      trainingFile: $trainingFile
      method: { type: SUPERVISED, supervised: { hyperparameters: { nEpochs: 3 } } }
      suffix: "my-first-model"
      seed: 42
      metadata: { project: "demo" }
    }
  ) {
    __typename
    ... on CreateFineTuningJobSuccess { job { id status createdAt } }
    ... on ValidationError { message field }
    ... on Error { message }
  }
}
`,
    variables: { trainingFile: 'file-…' },
  },
  {
    title: '3. Follow a job',
    query: `# 3. Follow the job (run again until status is SUCCEEDED): status, events, checkpoints, files and the training curve.
query FollowJob($id: ID!) {
  fineTuningJob(id: $id) {
    id
    status
    model
    fineTunedModel
    trainedTokens
    estimatedFinish
    finishedAt
    hyperparameters { nEpochs batchSize learningRateMultiplier }
    error { code message param }
    trainingFile { id filename bytes }
    resultFiles { id filename }
    events(first: 5) {
      edges { node { createdAt level type message } }
      pageInfo { hasNextPage endCursor }
    }
    checkpoints(first: 3) {
      edges { node { stepNumber fineTunedModelCheckpoint metrics { trainLoss trainMeanTokenAccuracy } } }
    }
    metrics { step trainLoss trainMeanTokenAccuracy validLoss }
  }
}

# Every job, page by page (pass pageInfo.endCursor as $after).
query Jobs($after: String) {
  fineTuningJobs(first: 20, after: $after) {
    edges { cursor node { id status model createdAt } }
    pageInfo { hasNextPage endCursor }
  }
}

mutation Cancel($id: ID!) {
  cancelFineTuningJob(id: $id) {
    __typename
    ... on CancelFineTuningJobSuccess { job { id status } }
    ... on Error { message }
  }
}
`,
    variables: { id: 'ftjob-…' },
  },
];

/** The examples as one .graphql document (for the README). */
export function examplesDocument(): string {
  const head = `# Example operations for the fine-tuning GraphQL API (GraphiQL at http://127.0.0.1:4000/graphql opens with them).
# With no configuration the server runs its embedded local fine-tuning service (key ${LOCAL_API_KEY}, no network).
`;
  return head + EXAMPLES.map((e) => `\n# ---- ${e.title} ----\n${e.query}${e.variables ? `# variables: ${JSON.stringify(e.variables)}\n` : ''}`).join('');
}
