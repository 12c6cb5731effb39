/**
 * Drives fine-tuning jobs through their lifecycle:
 *   validating_files → queued → running → succeeded | failed | cancelled  (running ⇄ paused → queued → running)
 *
 * Every state change and every training step is one SQLite transaction together with its events, so the
 * database is always a consistent picture of the job. After a crash, `start()` picks every unfinished job
 * up where the database says it is: a running job re-creates its trainer, fast-forwards it to the last
 * recorded step (training is deterministic) and continues.
 */
import type { ResolvedOptions } from './options.js';
import { ApiError } from './errors.js';
import { newCheckpointId, newEventId, newFileId, newModelTag, nowSeconds } from './ids.js';
import type { EventLevel, JobError, JobRow, JobStatus, Store } from './store.js';
import type {
  DatasetResult,
  FineTuneMethodType,
  PrepareOptions,
  RequestedHyperparameters,
  StepMetrics,
  TokenizedExample,
  Trainer,
  TrainingPlan,
} from './training/types.js';

/** The data side, as the scheduler uses it (src/training/index.ts). */
export interface TrainingApi {
  /** Yields to the event loop while it works, so that a large file does not stall the server. */
  prepareDatasetAsync(content: string, opts: PrepareOptions): Promise<DatasetResult>;
  planTraining(examples: TokenizedExample[], requested: RequestedHyperparameters, method: FineTuneMethodType): TrainingPlan;
  createTrainer(train: TokenizedExample[], valid: TokenizedExample[] | null, plan: TrainingPlan, seed: number): Trainer;
}

interface Active {
  timer?: NodeJS.Timeout;
  train?: TokenizedExample[];
  valid?: TokenizedExample[] | null;
  trainer?: Trainer;
}

export const RESULTS_CSV_HEADER = 'step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy';

const CANCELLABLE: readonly JobStatus[] = ['validating_files', 'queued', 'running', 'paused'];

/** Thrown inside a step when the job's data cannot be prepared again (e.g. after a restart). */
class JobFailure extends Error {
  constructor(readonly jobError: JobError) {
    super(jobError.message);
  }
}

export class Scheduler {
  private readonly active = new Map<string, Active>();
  private started = false;
  private closed = false;
  private housekeeping?: NodeJS.Timeout;

  constructor(
    private readonly store: Store,
    private readonly opts: ResolvedOptions,
    private readonly training: TrainingApi,
    private readonly log: (msg: string, err?: unknown) => void = () => {},
  ) {}

  /** Start driving jobs, picking up every unfinished job from the database (crash recovery). */
  start(): void {
    if (this.started || this.closed) return;
    this.started = true;
    for (const job of this.store.activeJobs()) this.scheduleFor(job);
    this.expireIdempotency();
    this.housekeeping = setInterval(() => this.expireIdempotency(), 10 * 60 * 1000);
    this.housekeeping.unref();
  }

  close(): void {
    this.closed = true;
    if (this.housekeeping) clearInterval(this.housekeeping);
    for (const a of this.active.values()) if (a.timer) clearTimeout(a.timer);
    this.active.clear();
  }

  /** A job was just created (status validating_files). */
  jobCreated(job: JobRow): void {
    if (this.started) this.scheduleFor(job);
  }

  // ---------------------------------------------------------------- user actions

  cancel(job: JobRow): JobRow {
    if (!CANCELLABLE.includes(job.status)) {
      throw new ApiError(
        400,
        `Job ${job.id} has already ${job.status === 'cancelled' ? 'been cancelled' : job.status} and cannot be cancelled.`,
        'invalid_request_error',
        'fine_tuning_job_id',
        'invalid_job_status',
      );
    }
    this.stopTimer(job.id);
    this.active.delete(job.id);
    this.store.tx(() => {
      this.store.updateJob(job.id, { status: 'cancelled' });
      this.event(job.id, 'warn', 'Fine tuning process stopping due to job cancellation');
      this.store.purgeDeletedContent([job.training_file, job.validation_file]);
    });
    return this.store.getJobById(job.id)!;
  }

  pause(job: JobRow): JobRow {
    if (job.status !== 'running') {
      throw new ApiError(
        400,
        `Job ${job.id} cannot be paused: only a running job can be paused, and its status is ${job.status}.`,
        'invalid_request_error',
        'fine_tuning_job_id',
        'invalid_job_status',
      );
    }
    this.stopTimer(job.id);
    const total = job.plan?.totalSteps ?? 0;
    this.store.tx(() => {
      this.store.updateJob(job.id, { status: 'paused' });
      this.event(job.id, 'info', `Fine-tuning job paused at step ${job.current_step}/${total}`);
    });
    return this.store.getJobById(job.id)!;
  }

  resume(job: JobRow): JobRow {
    if (job.status !== 'paused') {
      throw new ApiError(
        400,
        `Job ${job.id} cannot be resumed: only a paused job can be resumed, and its status is ${job.status}.`,
        'invalid_request_error',
        'fine_tuning_job_id',
        'invalid_job_status',
      );
    }
    const now = Date.now();
    this.store.tx(() => {
      this.store.updateJob(job.id, { status: 'queued', phase_started_ms: now });
      this.event(job.id, 'info', 'Fine-tuning job resumed, moving job to queued state');
    });
    const updated = this.store.getJobById(job.id)!;
    if (this.started) this.scheduleFor(updated);
    return updated;
  }

  // ---------------------------------------------------------------- driving

  private scheduleFor(job: JobRow): void {
    const elapsed = Date.now() - job.phase_started_ms;
    switch (job.status) {
      case 'validating_files':
        this.later(job.id, Math.max(0, this.opts.validationMs - elapsed), () => this.validate(job.id));
        break;
      case 'queued':
        this.later(job.id, Math.max(0, this.opts.queueMs - elapsed), () => this.beginRunning(job.id));
        break;
      case 'running':
        this.later(job.id, this.opts.stepMs, () => this.step(job.id));
        break;
      default:
        break;
    }
  }

  private entry(jobId: string): Active {
    let a = this.active.get(jobId);
    if (!a) {
      a = {};
      this.active.set(jobId, a);
    }
    return a;
  }

  private later(jobId: string, ms: number, fn: () => void | Promise<void>): void {
    if (this.closed) return;
    const a = this.entry(jobId);
    if (a.timer) clearTimeout(a.timer);
    a.timer = setTimeout(() => {
      a.timer = undefined;
      if (this.closed) return;
      Promise.resolve()
        .then(fn)
        .catch((err) => this.unexpected(jobId, err));
    }, ms);
    a.timer.unref();
  }

  private stopTimer(jobId: string): void {
    const a = this.active.get(jobId);
    if (a?.timer) {
      clearTimeout(a.timer);
      a.timer = undefined;
    }
  }

  /** A bug or an I/O error inside a step: fail the job with a server error rather than leave it stuck. */
  private unexpected(jobId: string, err: unknown): void {
    if (this.closed) return;
    if (err instanceof JobFailure) {
      this.fail(jobId, err.jobError);
      return;
    }
    this.log(`job ${jobId}: unexpected error`, err);
    try {
      this.fail(jobId, {
        code: 'server_error',
        message: 'The job failed due to an internal server error.',
        param: null,
      });
    } catch (e) {
      this.log(`job ${jobId}: could not record the failure`, e);
    }
  }

  private event(jobId: string, level: EventLevel, message: string, type: 'message' | 'metrics' = 'message', data: Record<string, unknown> = {}): void {
    this.store.insertEvent({ id: newEventId(), job_id: jobId, created_at: nowSeconds(), level, message, type, data });
  }

  private fail(jobId: string, error: JobError): void {
    this.stopTimer(jobId);
    this.active.delete(jobId);
    const job = this.store.getJobById(jobId);
    if (!job || !CANCELLABLE.includes(job.status)) return;
    this.store.tx(() => {
      this.store.updateJob(jobId, { status: 'failed', error });
      this.event(jobId, 'error', error.message);
      this.store.purgeDeletedContent([job.training_file, job.validation_file]);
    });
  }

  /** Tokenize and check one file; returns the examples and warnings or the job error. */
  private async prepare(
    job: JobRow,
    role: 'training_file' | 'validation_file',
  ): Promise<{ ok: true; examples: TokenizedExample[]; warnings: string[] } | { ok: false; error: JobError }> {
    const fileId = role === 'training_file' ? job.training_file : job.validation_file!;
    const content = this.store.getFileContent(job.org_id, fileId);
    const kind = role === 'training_file' ? 'training' : 'validation';
    if (content == null) {
      return {
        ok: false,
        error: {
          code: `invalid_${kind}_file`,
          message: `The job failed due to an invalid ${kind} file. File ${fileId} no longer exists.`,
          param: role,
        },
      };
    }
    const r = await this.training.prepareDatasetAsync(content.toString('utf8'), { model: job.model, method: job.method, role });
    if (!r.ok) {
      const message = /^The job failed/.test(r.message) ? r.message : `The job failed due to an invalid ${kind} file. ${r.message}`;
      return { ok: false, error: { code: r.code, message, param: role } };
    }
    return { ok: true, examples: r.examples, warnings: r.warnings.map((w) => w.message) };
  }

  /** True when the job is still in `status` (it may have been cancelled while we were awaiting). */
  private still(jobId: string, status: JobStatus): JobRow | undefined {
    if (this.closed) return undefined;
    const job = this.store.getJobById(jobId);
    return job && job.status === status ? job : undefined;
  }

  private async validate(jobId: string): Promise<void> {
    const job = this.still(jobId, 'validating_files');
    if (!job) return;
    const train = await this.prepare(job, 'training_file');
    if (!this.still(jobId, 'validating_files')) return;
    if (!train.ok) return this.fail(jobId, train.error);
    let valid: { examples: TokenizedExample[]; warnings: string[] } | null = null;
    if (job.validation_file) {
      const v = await this.prepare(job, 'validation_file');
      if (!this.still(jobId, 'validating_files')) return;
      if (!v.ok) return this.fail(jobId, v.error);
      valid = v;
    }
    const a = this.entry(jobId);
    a.train = train.examples;
    a.valid = valid ? valid.examples : null;
    const now = Date.now();
    this.store.tx(() => {
      for (const w of train.warnings) this.event(jobId, 'warn', w);
      if (valid) for (const w of valid.warnings) this.event(jobId, 'warn', `Validation file: ${w}`);
      this.event(jobId, 'info', 'Files validated, moving job to queued state');
      this.store.updateJob(jobId, { status: 'queued', phase_started_ms: now });
    });
    this.later(jobId, this.opts.queueMs, () => this.beginRunning(jobId));
  }

  /**
   * Make sure this process has the job's examples (prepared again after a restart, or for a job that
   * was paused before one). A file that no longer validates fails the job.
   */
  private async ensureExamples(job: JobRow): Promise<void> {
    const a = this.entry(job.id);
    if (a.train) return;
    const train = await this.prepare(job, 'training_file');
    if (!train.ok) throw new JobFailure(train.error);
    let valid: TokenizedExample[] | null = null;
    if (job.validation_file) {
      const v = await this.prepare(job, 'validation_file');
      if (!v.ok) throw new JobFailure(v.error);
      valid = v.examples;
    }
    a.train = train.examples;
    a.valid = valid;
  }

  /** A trainer positioned at the job's last recorded step. */
  private trainerFor(job: JobRow): Trainer {
    const a = this.entry(job.id);
    if (a.trainer && a.trainer.stepsDone === job.current_step) return a.trainer;
    if (!a.train) throw new Error(`examples of ${job.id} are not prepared`);
    const trainer = this.training.createTrainer(a.train, a.valid ?? null, job.plan!, job.seed);
    if (job.current_step > 0) trainer.fastForward(job.current_step);
    a.trainer = trainer;
    return trainer;
  }

  private async beginRunning(jobId: string): Promise<void> {
    let job = this.still(jobId, 'queued');
    if (!job) return;
    await this.ensureExamples(job);
    job = this.still(jobId, 'queued');
    if (!job) return;
    const train = this.entry(jobId).train!;
    if (job.plan) {
      // Resumed after a pause: continue from the recorded step.
      const { current_step: step, plan } = job;
      this.trainerFor(job);
      this.store.tx(() => {
        this.store.updateJob(jobId, { status: 'running' });
        this.event(jobId, 'info', `Fine-tuning job resumed at step ${step}/${plan.totalSteps}`);
      });
    } else {
      const plan = this.training.planTraining(train, job.requested, job.method);
      this.store.tx(() => {
        this.store.updateJob(jobId, { status: 'running', plan, model_tag: newModelTag() });
        this.event(jobId, 'info', 'Fine-tuning job started');
      });
      this.trainerFor(this.store.getJobById(jobId)!);
    }
    this.later(jobId, this.opts.stepMs, () => this.step(jobId));
  }

  private modelName(job: JobRow, tag: string): string {
    return `ft:${job.model}:${job.org_id}:${job.suffix ?? ''}:${tag}`;
  }

  private async step(jobId: string): Promise<void> {
    let job = this.still(jobId, 'running');
    if (!job?.plan) return;
    if (!this.entry(jobId).train) {
      // First step after a restart: prepare the data again, then fast-forward the trainer (trainerFor).
      await this.ensureExamples(job);
      job = this.still(jobId, 'running');
      if (!job?.plan) return;
    }
    const plan = job.plan;
    if (job.current_step >= plan.totalSteps) return; // finished in a previous transaction
    const trainer = this.trainerFor(job);
    const m = trainer.step();
    const n = job.current_step + 1;
    const metrics: StepMetrics = { ...m, step: n };
    const hasValid = metrics.valid_loss !== undefined;
    const data: Record<string, unknown> = {
      step: n,
      train_loss: metrics.train_loss,
      train_mean_token_accuracy: metrics.train_mean_token_accuracy,
      total_steps: plan.totalSteps,
    };
    if (hasValid) {
      data.valid_loss = metrics.valid_loss;
      data.valid_mean_token_accuracy = metrics.valid_mean_token_accuracy;
    }
    const message =
      `Step ${n}/${plan.totalSteps}: training loss=${metrics.train_loss.toFixed(2)}` + (hasValid ? `, validation loss=${metrics.valid_loss!.toFixed(2)}` : '');

    const last = n >= plan.totalSteps;
    const epoch = Math.round(n / plan.stepsPerEpoch);
    const checkpoint = trainer.isEpochEnd(n) && epoch > plan.nEpochs - 3 ? trainer.checkpointMetrics() : null;
    const finalModel = this.modelName(job, job.model_tag ?? newModelTag());

    this.store.tx(() => {
      const now = nowSeconds();
      this.store.insertStepMetrics(jobId, metrics);
      this.event(jobId, 'info', message, 'metrics', data);
      this.store.updateJob(jobId, { current_step: n });
      if (checkpoint) {
        const name = last ? finalModel : `${this.modelName(job, newModelTag())}:ckpt-step-${n}`;
        this.store.insertCheckpoint({
          id: newCheckpointId(),
          job_id: jobId,
          created_at: now,
          step_number: n,
          fine_tuned_model_checkpoint: name,
          metrics: { ...checkpoint, step: n } as unknown as Record<string, number>,
        });
        this.event(jobId, 'info', `Checkpoint created at step ${n} with Snapshot ID: ${name}`);
      }
      if (last) this.finish(job, plan, finalModel, now);
    });
    if (last) this.active.delete(jobId);
    else this.later(jobId, this.opts.stepMs, () => this.step(jobId));
  }

  /** Inside the last step's transaction: results file, model name, final events. */
  private finish(job: JobRow, plan: TrainingPlan, fineTunedModel: string, now: number): void {
    const rows = this.store
      .allStepMetrics(job.id)
      .map((m) => [m.step, m.train_loss, m.train_mean_token_accuracy, m.valid_loss ?? '', m.valid_mean_token_accuracy ?? ''].join(','));
    const csv = Buffer.from([RESULTS_CSV_HEADER, ...rows].join('\n') + '\n', 'utf8');
    const resultFile = newFileId();
    this.store.insertFile(
      {
        id: resultFile,
        org_id: job.org_id,
        filename: 'step_metrics.csv',
        purpose: 'fine-tune-results',
        bytes: csv.length,
        created_at: now,
        expires_at: null,
      },
      csv,
    );
    this.store.updateJob(job.id, {
      status: 'succeeded',
      fine_tuned_model: fineTunedModel,
      trained_tokens: plan.trainedTokens,
      finished_at: now,
      result_files: [resultFile],
    });
    this.event(job.id, 'info', `New fine-tuned model created: ${fineTunedModel}`);
    this.event(job.id, 'info', 'The job has successfully completed');
    this.store.purgeDeletedContent([job.training_file, job.validation_file]);
  }

  private expireIdempotency(): void {
    try {
      this.store.expireIdempotency(Date.now() - this.opts.idempotencyTtlMs);
    } catch (err) {
      if (!this.closed) this.log('idempotency expiry failed', err);
    }
  }
}
