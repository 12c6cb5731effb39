/**
 * vitest globalSetup: when OpenAI's spec is not found, one line says that the checks against it are skipped and
 * how to run them (the skipped tests themselves are in test/api/spec.test.ts).
 */
export default async function setup() {
  const { SPEC_PATH, SPEC_SKIPPED } = await import('./spec.js');
  if (!SPEC_PATH) console.log(SPEC_SKIPPED);
}
