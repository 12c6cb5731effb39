/**
 * Durable state of the local fine-tuning service, in SQLite (better-sqlite3).
 *
 * Durability: WAL journal with synchronous=NORMAL. Every commit is written to the WAL file (a write(2)
 * into the OS page cache) before `commit` returns, so killing the process at any moment — SIGKILL
 * included — loses nothing that was committed; only a power cut or kernel crash could lose the last
 * transactions, which FULL would also cover at the price of an fsync per training step. Set
 * `synchronous: 'FULL'` in the options for that.
 *
 * One writer per file: the connection uses `locking_mode = EXCLUSIVE`, so SQLite takes an exclusive OS lock on
 * the database file when it opens it (at `journal_mode = WAL`) and keeps it until the connection closes. A second
 * local service on the same file, in this process or another, gets SQLITE_BUSY at open and a DatabaseInUseError,
 * instead of both driving the same jobs. The lock is an OS file lock (fcntl), so it goes away with the process,
 * SIGKILL included, and the next service opens the file and recovers it from the WAL. (In this mode the WAL index
 * lives in the process's memory, not in a `-shm` file; other programs cannot read the file while it is held.)
 * `:memory:` databases are private to their connection and unaffected.
 *
 * Rows keep a monotonic `seq` so that "newest first" and `after` cursors are exact even when several
 * objects share a `created_at` second.
 */
import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { FineTuneMethodType, RequestedHyperparameters, StepMetrics, TrainingPlan } from './training/types.js';

export type JobStatus = 'validating_files' | 'queued' | 'running' | 'paused' | 'succeeded' | 'failed' | 'cancelled';
export const TERMINAL_STATUSES: readonly JobStatus[] = ['succeeded', 'failed', 'cancelled'];

export interface FileRow {
  id: string;
  org_id: string;
  filename: string;
  purpose: string;
  bytes: number;
  created_at: number;
  expires_at: number | null;
}

export interface JobError {
  code: string;
  message: string;
  param: string | null;
}

export interface Integration {
  type: 'wandb';
  wandb: { project: string; name?: string | null; entity?: string | null; tags?: string[] };
}

export interface JobRow {
  id: string;
  org_id: string;
  model: string;
  status: JobStatus;
  training_file: string;
  validation_file: string | null;
  created_at: number;
  finished_at: number | null;
  fine_tuned_model: string | null;
  trained_tokens: number | null;
  error: JobError | null;
  seed: number;
  suffix: string | null;
  method: FineTuneMethodType;
  requested: RequestedHyperparameters;
  plan: TrainingPlan | null;
  current_step: number;
  metadata: Record<string, string> | null;
  integrations: Integration[] | null;
  result_files: string[];
  /** Wall-clock ms at which the current validating/queued phase began (drives the scheduler after a restart). */
  phase_started_ms: number;
  /** Random 8-character tag of the final model name, chosen when the job starts running. */
  model_tag: string | null;
}

export type EventLevel = 'info' | 'warn' | 'error';
export interface EventRow {
  id: string;
  job_id: string;
  created_at: number;
  level: EventLevel;
  message: string;
  type: 'message' | 'metrics';
  data: Record<string, unknown>;
}

export interface CheckpointRow {
  id: string;
  job_id: string;
  created_at: number;
  step_number: number;
  fine_tuned_model_checkpoint: string;
  metrics: Record<string, number>;
}

export interface IdempotencyRow {
  org_id: string;
  key: string;
  route: string;
  request_hash: string;
  state: 'pending' | 'done';
  status: number | null;
  body: string | null;
  content_type: string | null;
  created_ms: number;
}

export interface Page<T> {
  items: T[];
  hasMore: boolean;
}

/** Thrown when an `after` cursor names no object of this org (routes turn it into a 400 naming `after`). */
export class UnknownCursorError extends Error {
  constructor(readonly after: string) {
    super(`unknown cursor ${after}`);
  }
}

/**
 * Thrown when the database file is held by another connection: another local fine-tuning service (a standalone
 * `npm run emulator` or the one embedded in `npm start`), or another program that has the file open.
 */
export class DatabaseInUseError extends Error {
  readonly code = 'DATABASE_IN_USE';
  constructor(readonly path: string) {
    super(
      `the local database ${resolve(path)} is in use by another local fine-tuning service (\`npm run emulator\` or ` +
        `\`npm start\`) or another program; stop that one, or set EMULATOR_DB to another file`,
    );
    this.name = 'DatabaseInUseError';
  }
}

/** How long opening waits for a lock held by someone else (e.g. a service that is just closing the file). */
const LOCK_WAIT_MS = 1000;

export interface StoreOptions {
  /** File path, or ':memory:'. The parent folder is created. */
  path: string;
  synchronous?: 'NORMAL' | 'FULL';
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS files (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  org_id TEXT NOT NULL,
  filename TEXT NOT NULL,
  purpose TEXT NOT NULL,
  bytes INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  expires_at INTEGER,
  content BLOB,
  deleted INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS files_org ON files (org_id, deleted, seq);

CREATE TABLE IF NOT EXISTS jobs (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  org_id TEXT NOT NULL,
  model TEXT NOT NULL,
  status TEXT NOT NULL,
  training_file TEXT NOT NULL,
  validation_file TEXT,
  created_at INTEGER NOT NULL,
  finished_at INTEGER,
  fine_tuned_model TEXT,
  trained_tokens INTEGER,
  error_json TEXT,
  seed INTEGER NOT NULL,
  suffix TEXT,
  method TEXT NOT NULL,
  requested_json TEXT NOT NULL,
  plan_json TEXT,
  current_step INTEGER NOT NULL DEFAULT 0,
  metadata_json TEXT,
  integrations_json TEXT,
  result_files_json TEXT NOT NULL DEFAULT '[]',
  phase_started_ms INTEGER NOT NULL,
  model_tag TEXT
);
CREATE INDEX IF NOT EXISTS jobs_org ON jobs (org_id, seq);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status);

CREATE TABLE IF NOT EXISTS events (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  job_id TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  level TEXT NOT NULL,
  message TEXT NOT NULL,
  type TEXT NOT NULL,
  data_json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_job ON events (job_id, seq);

CREATE TABLE IF NOT EXISTS checkpoints (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  job_id TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  step_number INTEGER NOT NULL,
  fine_tuned_model_checkpoint TEXT NOT NULL,
  metrics_json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS checkpoints_job ON checkpoints (job_id, seq);

CREATE TABLE IF NOT EXISTS step_metrics (
  job_id TEXT NOT NULL,
  step INTEGER NOT NULL,
  data_json TEXT NOT NULL,
  PRIMARY KEY (job_id, step)
);

CREATE TABLE IF NOT EXISTS idempotency (
  org_id TEXT NOT NULL,
  key TEXT NOT NULL,
  route TEXT NOT NULL,
  request_hash TEXT NOT NULL,
  state TEXT NOT NULL,
  status INTEGER,
  body TEXT,
  content_type TEXT,
  created_ms INTEGER NOT NULL,
  PRIMARY KEY (org_id, key, route)
);
CREATE INDEX IF NOT EXISTS idempotency_age ON idempotency (created_ms);
`;

const parse = <T>(s: string | null): T | null => (s == null ? null : (JSON.parse(s) as T));

function toJobRow(r: any): JobRow {
  return {
    id: r.id,
    org_id: r.org_id,
    model: r.model,
    status: r.status,
    training_file: r.training_file,
    validation_file: r.validation_file,
    created_at: r.created_at,
    finished_at: r.finished_at,
    fine_tuned_model: r.fine_tuned_model,
    trained_tokens: r.trained_tokens,
    error: parse<JobError>(r.error_json),
    seed: r.seed,
    suffix: r.suffix,
    method: r.method,
    requested: JSON.parse(r.requested_json),
    plan: parse<TrainingPlan>(r.plan_json),
    current_step: r.current_step,
    metadata: parse<Record<string, string>>(r.metadata_json),
    integrations: parse<Integration[]>(r.integrations_json),
    result_files: JSON.parse(r.result_files_json),
    phase_started_ms: r.phase_started_ms,
    model_tag: r.model_tag,
  };
}

const toEventRow = (r: any): EventRow => ({
  id: r.id,
  job_id: r.job_id,
  created_at: r.created_at,
  level: r.level,
  message: r.message,
  type: r.type,
  data: JSON.parse(r.data_json),
});

const toCheckpointRow = (r: any): CheckpointRow => ({
  id: r.id,
  job_id: r.job_id,
  created_at: r.created_at,
  step_number: r.step_number,
  fine_tuned_model_checkpoint: r.fine_tuned_model_checkpoint,
  metrics: JSON.parse(r.metrics_json),
});

const FILE_COLUMNS = 'id, org_id, filename, purpose, bytes, created_at, expires_at';

export class Store {
  readonly db: Database.Database;
  private readonly st: Record<string, Database.Statement>;
  /** Statements built from a few variable parts (filters, patched columns), prepared once per shape. */
  private readonly cache = new Map<string, Database.Statement>();

  constructor(opts: StoreOptions) {
    const inMemory = opts.path === ':memory:' || opts.path === '';
    if (!inMemory) mkdirSync(dirname(opts.path), { recursive: true });
    // Once the exclusive lock is held no other connection competes for it, so the busy timeout only matters here.
    this.db = new Database(opts.path, { timeout: LOCK_WAIT_MS });
    try {
      if (!inMemory) this.db.pragma('locking_mode = EXCLUSIVE');
      this.db.pragma('journal_mode = WAL'); // the first access: takes the exclusive lock (or fails with SQLITE_BUSY)
      this.db.pragma(`synchronous = ${opts.synchronous ?? 'NORMAL'}`);
      this.db.exec(SCHEMA);
    } catch (err) {
      this.db.close();
      if (String((err as { code?: unknown }).code).startsWith('SQLITE_BUSY')) throw new DatabaseInUseError(opts.path);
      throw err;
    }
    const p = (sql: string) => this.db.prepare(sql);
    this.st = {
      insertFile: p(
        `INSERT INTO files (id, org_id, filename, purpose, bytes, created_at, expires_at, content)
         VALUES (@id, @org_id, @filename, @purpose, @bytes, @created_at, @expires_at, @content)`,
      ),
      getFile: p(`SELECT ${FILE_COLUMNS} FROM files WHERE id = ? AND org_id = ? AND deleted = 0`),
      getFileSeq: p(`SELECT seq FROM files WHERE id = ? AND org_id = ? AND deleted = 0`),
      getContent: p(`SELECT content FROM files WHERE id = ? AND org_id = ?`),
      softDeleteFile: p(`UPDATE files SET deleted = 1 WHERE id = ? AND org_id = ? AND deleted = 0`),
      purgeContent: p(
        `UPDATE files SET content = NULL WHERE id = ? AND deleted = 1 AND NOT EXISTS (
           SELECT 1 FROM jobs WHERE (jobs.training_file = files.id OR jobs.validation_file = files.id)
             AND jobs.status NOT IN ('succeeded', 'failed', 'cancelled'))`,
      ),
      insertJob: p(
        `INSERT INTO jobs (id, org_id, model, status, training_file, validation_file, created_at, seed, suffix, method,
           requested_json, metadata_json, integrations_json, phase_started_ms)
         VALUES (@id, @org_id, @model, @status, @training_file, @validation_file, @created_at, @seed, @suffix, @method,
           @requested_json, @metadata_json, @integrations_json, @phase_started_ms)`,
      ),
      getJob: p(`SELECT * FROM jobs WHERE id = ? AND org_id = ?`),
      getJobAnyOrg: p(`SELECT * FROM jobs WHERE id = ?`),
      getJobSeq: p(`SELECT seq FROM jobs WHERE id = ? AND org_id = ?`),
      activeJobs: p(`SELECT * FROM jobs WHERE status IN ('validating_files', 'queued', 'running') ORDER BY seq`),
      insertEvent: p(
        `INSERT INTO events (id, job_id, created_at, level, message, type, data_json)
         VALUES (@id, @job_id, @created_at, @level, @message, @type, @data_json)`,
      ),
      getEventSeq: p(`SELECT seq FROM events WHERE id = ? AND job_id = ?`),
      insertCheckpoint: p(
        `INSERT INTO checkpoints (id, job_id, created_at, step_number, fine_tuned_model_checkpoint, metrics_json)
         VALUES (@id, @job_id, @created_at, @step_number, @fine_tuned_model_checkpoint, @metrics_json)`,
      ),
      getCheckpointSeq: p(`SELECT seq FROM checkpoints WHERE id = ? AND job_id = ?`),
      insertMetrics: p(`INSERT INTO step_metrics (job_id, step, data_json) VALUES (?, ?, ?)`),
      allMetrics: p(`SELECT data_json FROM step_metrics WHERE job_id = ? ORDER BY step`),
      getIdem: p(`SELECT * FROM idempotency WHERE org_id = ? AND key = ? AND route = ?`),
      insertIdem: p(
        `INSERT INTO idempotency (org_id, key, route, request_hash, state, created_ms)
         VALUES (@org_id, @key, @route, @request_hash, 'pending', @created_ms)`,
      ),
      finishIdem: p(
        `UPDATE idempotency SET state = 'done', status = @status, body = @body, content_type = @content_type
         WHERE org_id = @org_id AND key = @key AND route = @route`,
      ),
      deleteIdem: p(`DELETE FROM idempotency WHERE org_id = ? AND key = ? AND route = ?`),
      expireIdem: p(`DELETE FROM idempotency WHERE created_ms < ?`),
    };
  }

  private prep(sql: string): Database.Statement {
    let stmt = this.cache.get(sql);
    if (!stmt) {
      stmt = this.db.prepare(sql);
      this.cache.set(sql, stmt);
    }
    return stmt;
  }

  /** Run `fn` in one IMMEDIATE transaction (all or nothing). */
  tx<T>(fn: () => T): T {
    return this.db.transaction(fn).immediate();
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  // ---- files ----

  insertFile(row: FileRow, content: Buffer): void {
    this.st.insertFile.run({ ...row, content });
  }

  /** A live (not deleted, not expired) file of this org. */
  getFile(orgId: string, id: string, now: number): FileRow | undefined {
    const row = this.st.getFile.get(id, orgId) as FileRow | undefined;
    if (row && row.expires_at != null && row.expires_at <= now) return undefined;
    return row;
  }

  /** Content of a file of this org, also when it was deleted while a job still needed it. */
  getFileContent(orgId: string, id: string): Buffer | null {
    const row = this.st.getContent.get(id, orgId) as { content: Buffer | null } | undefined;
    return row?.content ?? null;
  }

  deleteFile(orgId: string, id: string): boolean {
    return this.tx(() => {
      const changed = this.st.softDeleteFile.run(id, orgId).changes > 0;
      if (changed) this.st.purgeContent.run(id);
      return changed;
    });
  }

  /** Drop the content of deleted files that no unfinished job needs any more. */
  purgeDeletedContent(fileIds: (string | null)[]): void {
    for (const id of fileIds) if (id) this.st.purgeContent.run(id);
  }

  listFiles(orgId: string, q: { purpose?: string; after?: string; limit: number; order: 'asc' | 'desc'; now: number }): Page<FileRow> {
    const where = ['org_id = @org', 'deleted = 0', '(expires_at IS NULL OR expires_at > @now)'];
    const params: Record<string, unknown> = { org: orgId, now: q.now, limit: q.limit + 1 };
    if (q.purpose !== undefined) {
      where.push('purpose = @purpose');
      params.purpose = q.purpose;
    }
    if (q.after !== undefined) {
      const cursor = this.st.getFileSeq.get(q.after, orgId) as { seq: number } | undefined;
      if (!cursor) throw new UnknownCursorError(q.after);
      where.push(q.order === 'desc' ? 'seq < @cursor' : 'seq > @cursor');
      params.cursor = cursor.seq;
    }
    const sql = `SELECT ${FILE_COLUMNS} FROM files WHERE ${where.join(' AND ')} ORDER BY seq ${q.order === 'desc' ? 'DESC' : 'ASC'} LIMIT @limit`;
    const rows = this.prep(sql).all(params) as FileRow[];
    return { items: rows.slice(0, q.limit), hasMore: rows.length > q.limit };
  }

  // ---- jobs ----

  insertJob(job: JobRow): void {
    this.st.insertJob.run({
      id: job.id,
      org_id: job.org_id,
      model: job.model,
      status: job.status,
      training_file: job.training_file,
      validation_file: job.validation_file,
      created_at: job.created_at,
      seed: job.seed,
      suffix: job.suffix,
      method: job.method,
      requested_json: JSON.stringify(job.requested),
      metadata_json: job.metadata == null ? null : JSON.stringify(job.metadata),
      integrations_json: job.integrations == null ? null : JSON.stringify(job.integrations),
      phase_started_ms: job.phase_started_ms,
    });
  }

  getJob(orgId: string, id: string): JobRow | undefined {
    const r = this.st.getJob.get(id, orgId);
    return r ? toJobRow(r) : undefined;
  }

  getJobById(id: string): JobRow | undefined {
    const r = this.st.getJobAnyOrg.get(id);
    return r ? toJobRow(r) : undefined;
  }

  /** Jobs the scheduler must drive (paused jobs wait for a resume). */
  activeJobs(): JobRow[] {
    return this.st.activeJobs.all().map(toJobRow);
  }

  /** Update some columns of a job. Only the columns named in `patch` change. */
  updateJob(id: string, patch: Partial<Omit<JobRow, 'id' | 'org_id'>>): void {
    const sets: string[] = [];
    const params: Record<string, unknown> = { id };
    const json = new Set(['error', 'requested', 'plan', 'metadata', 'integrations', 'result_files']);
    const column: Record<string, string> = {
      error: 'error_json',
      requested: 'requested_json',
      plan: 'plan_json',
      metadata: 'metadata_json',
      integrations: 'integrations_json',
      result_files: 'result_files_json',
    };
    for (const [k, v] of Object.entries(patch)) {
      const col = column[k] ?? k;
      sets.push(`${col} = @${col}`);
      params[col] = json.has(k) ? (v == null ? null : JSON.stringify(v)) : v;
    }
    if (sets.length === 0) return;
    this.prep(`UPDATE jobs SET ${sets.join(', ')} WHERE id = @id`).run(params);
  }

  listJobs(orgId: string, q: { after?: string; limit: number; metadata?: Record<string, string> | null }): Page<JobRow> {
    const where = ['org_id = @org'];
    const params: Record<string, unknown> = { org: orgId, limit: q.limit + 1 };
    if (q.metadata === null) where.push('metadata_json IS NULL');
    else if (q.metadata) {
      Object.entries(q.metadata).forEach(([k, v], i) => {
        where.push(`EXISTS (SELECT 1 FROM json_each(jobs.metadata_json) AS m WHERE m.key = @mk${i} AND m.value = @mv${i})`);
        params[`mk${i}`] = k;
        params[`mv${i}`] = v;
      });
    }
    if (q.after !== undefined) {
      const cursor = this.st.getJobSeq.get(q.after, orgId) as { seq: number } | undefined;
      if (!cursor) throw new UnknownCursorError(q.after);
      where.push('seq < @cursor');
      params.cursor = cursor.seq;
    }
    const rows = this.prep(`SELECT * FROM jobs WHERE ${where.join(' AND ')} ORDER BY seq DESC LIMIT @limit`)
      .all(params)
      .map(toJobRow);
    return { items: rows.slice(0, q.limit), hasMore: rows.length > q.limit };
  }

  // ---- events, checkpoints, metrics ----

  insertEvent(e: EventRow): void {
    this.st.insertEvent.run({ ...e, data_json: JSON.stringify(e.data) });
  }

  listEvents(jobId: string, q: { after?: string; limit: number }): Page<EventRow> {
    return this.pageByJob('events', jobId, q, this.st.getEventSeq, toEventRow);
  }

  insertCheckpoint(c: CheckpointRow): void {
    this.st.insertCheckpoint.run({ ...c, metrics_json: JSON.stringify(c.metrics) });
  }

  listCheckpoints(jobId: string, q: { after?: string; limit: number }): Page<CheckpointRow> {
    return this.pageByJob('checkpoints', jobId, q, this.st.getCheckpointSeq, toCheckpointRow);
  }

  insertStepMetrics(jobId: string, m: StepMetrics): void {
    this.st.insertMetrics.run(jobId, m.step, JSON.stringify(m));
  }

  allStepMetrics(jobId: string): StepMetrics[] {
    return (this.st.allMetrics.all(jobId) as { data_json: string }[]).map((r) => JSON.parse(r.data_json));
  }

  private pageByJob<T>(
    table: 'events' | 'checkpoints',
    jobId: string,
    q: { after?: string; limit: number },
    seqStmt: Database.Statement,
    map: (r: any) => T,
  ): Page<T> {
    const params: Record<string, unknown> = { job: jobId, limit: q.limit + 1 };
    let cursorClause = '';
    if (q.after !== undefined) {
      const cursor = seqStmt.get(q.after, jobId) as { seq: number } | undefined;
      if (!cursor) throw new UnknownCursorError(q.after);
      cursorClause = 'AND seq < @cursor';
      params.cursor = cursor.seq;
    }
    const rows = this.prep(`SELECT * FROM ${table} WHERE job_id = @job ${cursorClause} ORDER BY seq DESC LIMIT @limit`).all(params).map(map);
    return { items: rows.slice(0, q.limit), hasMore: rows.length > q.limit };
  }

  // ---- idempotency ----

  getIdempotency(orgId: string, key: string, route: string): IdempotencyRow | undefined {
    return this.st.getIdem.get(orgId, key, route) as IdempotencyRow | undefined;
  }

  insertIdempotency(row: Pick<IdempotencyRow, 'org_id' | 'key' | 'route' | 'request_hash' | 'created_ms'>): void {
    this.st.insertIdem.run(row);
  }

  finishIdempotency(row: { org_id: string; key: string; route: string; status: number; body: string; content_type: string | null }): void {
    this.st.finishIdem.run(row);
  }

  deleteIdempotency(orgId: string, key: string, route: string): void {
    this.st.deleteIdem.run(orgId, key, route);
  }

  expireIdempotency(olderThanMs: number): number {
    return this.st.expireIdem.run(olderThanMs).changes;
  }
}
