/**
 * vitest globalSetup for the secret-leak check (test/security/leak-tee.ts does the work in every test file).
 * It gives the workers a directory for their totals and, after the run, prints one line: how many files,
 * secrets and bytes were checked. It fails the run when a file reported a leak, or when test files ran but none
 * reported (the tee was not installed, so the check would be silently empty).
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';

interface FileStats {
  file: string;
  secrets: number;
  chunks: number;
  bytes: number;
  leaks: { channel: string; secretHint: string }[];
}

export default function setup(project: TestProject) {
  const dir = mkdtempSync(join(tmpdir(), 'leak-tee-'));
  project.provide('leakTeeDir', dir);
  return () => {
    const stats: FileStats[] = readdirSync(dir)
      .filter((f) => f.startsWith('stats-'))
      .map((f) => JSON.parse(readFileSync(join(dir, f), 'utf8')) as FileStats);
    rmSync(dir, { recursive: true, force: true });
    if (stats.length === 0) return; // e.g. a run filtered down to no test file
    const bytes = stats.reduce((n, s) => n + s.bytes, 0);
    const secrets = stats.reduce((n, s) => n + s.secrets, 0);
    const leaky = stats.filter((s) => s.leaks.length > 0);
    console.log(
      `secret-leak check: ${stats.length} test files, ${secrets} secrets looked for in ${(bytes / 1e6).toFixed(1)} MB of responses, websocket frames and logs: ${leaky.length ? `LEAKS in ${leaky.length} files` : 'no leak'}`,
    );
    if (leaky.length) {
      throw new Error(`secret leaked in: ${leaky.map((s) => `${s.file} (${s.leaks.map((l) => l.channel).join(', ')})`).join('; ')}`);
    }
  };
}
