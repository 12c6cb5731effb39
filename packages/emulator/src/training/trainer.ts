/**
 * A small real model trained on the user's tokens: an interpolated bigram language model.
 *
 * Targets are the tokens whose trainMask is true (assistant output with weight ≠ 0, completions,
 * DPO preferred outputs); the context of a target is the token before it (BOS for the first token).
 *
 *   unigram   q(t)   = (u(t) + ALPHA) / (U + ALPHA * V)
 *   bigram    p(t|c) = (n(c,t) + BETA * q(t)) / (n(c) + BETA)
 *
 * V is the encoding's vocabulary size (100,277 for cl100k_base, 200,019 for o200k_base, told apart
 * by the largest token id seen). Each training step takes the next batch of a per-epoch seeded
 * shuffle (mulberry32), measures the batch's mean cross-entropy (nats per target token) and its mean
 * token accuracy under the model as it is BEFORE the step, then adds `learning_rate_multiplier` to
 * n(c,t), n(c), u(t) and U for every (context, target) pair of the batch. Memorising the data is what
 * makes the training loss fall from epoch to epoch.
 *
 * Accuracy: the predicted next token after context c is the target seen most often after c so far
 * (kept as a running best per context, O(1) per update; ties keep the token that got there first);
 * for a context never seen, the most frequent target overall. A prediction counts when it equals the
 * target.
 *
 * Validation: every step measures a seeded sample of the validation set (min(batch_size, n_valid)
 * examples, walking seeded shuffles of the validation set), and checkpointMetrics() measures all of
 * it (full_valid_*). Validation never updates the model.
 *
 * A batch (or sample) with no target tokens reports loss 0 and accuracy 0. Metrics are rounded to 6
 * decimals. Everything is deterministic: same examples + plan + seed → the same numbers, and
 * fastForward(n) replays steps 1..n (updates only) to the exact state of an uninterrupted run.
 */
import { mixSeed, permutation } from './prng.js';
import type { CheckpointMetrics, StepMetrics, TokenizedExample, Trainer, TrainingPlan } from './types.js';

export const ALPHA = 0.01;
export const BETA = 1;
const BOS = -1;
const STREAM_TRAIN = 1;
const STREAM_VALID = 2;

const round6 = (x: number) => Math.round(x * 1e6) / 1e6;

/** (context, target) pairs of an example, flattened: [c0, t0, c1, t1, ...]. */
function pairsOf(ex: TokenizedExample): Int32Array {
  const { tokens, trainMask } = ex;
  let n = 0;
  const len = Math.min(tokens.length, trainMask.length);
  for (let i = 0; i < len; i++) if (trainMask[i]) n++;
  const out = new Int32Array(n * 2);
  let k = 0;
  for (let i = 0; i < len; i++) {
    if (!trainMask[i]) continue;
    out[k++] = i === 0 ? BOS : tokens[i - 1];
    out[k++] = tokens[i];
  }
  return out;
}

class Context {
  total = 0;
  best = -1;
  bestCount = 0;
  readonly next = new Map<number, number>();
}

class BigramModel {
  private readonly contexts = new Map<number, Context>();
  private readonly uni = new Map<number, number>();
  private uniTotal = 0;
  private uniBest = -1;
  private uniBestCount = 0;

  constructor(private readonly vocab: number) {}

  /** Sum of -ln p(target | context) and number of correct argmax predictions over the pairs. */
  measure(pairs: Int32Array, acc: { loss: number; correct: number; n: number }): void {
    const alphaV = ALPHA * this.vocab;
    for (let k = 0; k < pairs.length; k += 2) {
      const c = pairs[k];
      const t = pairs[k + 1];
      const q = ((this.uni.get(t) ?? 0) + ALPHA) / (this.uniTotal + alphaV);
      const ctx = this.contexts.get(c);
      let p: number;
      let predicted: number;
      if (ctx) {
        p = ((ctx.next.get(t) ?? 0) + BETA * q) / (ctx.total + BETA);
        predicted = ctx.best;
      } else {
        p = q;
        predicted = this.uniBest;
      }
      acc.loss -= Math.log(p);
      if (predicted === t) acc.correct += 1;
      acc.n += 1;
    }
  }

  update(pairs: Int32Array, lr: number): void {
    for (let k = 0; k < pairs.length; k += 2) {
      const c = pairs[k];
      const t = pairs[k + 1];
      let ctx = this.contexts.get(c);
      if (!ctx) {
        ctx = new Context();
        this.contexts.set(c, ctx);
      }
      const v = (ctx.next.get(t) ?? 0) + lr;
      ctx.next.set(t, v);
      ctx.total += lr;
      if (v > ctx.bestCount) {
        ctx.bestCount = v;
        ctx.best = t;
      }
      const u = (this.uni.get(t) ?? 0) + lr;
      this.uni.set(t, u);
      this.uniTotal += lr;
      if (u > this.uniBestCount) {
        this.uniBestCount = u;
        this.uniBest = t;
      }
    }
  }
}

function vocabFor(sets: TokenizedExample[][]): number {
  let max = 0;
  for (const set of sets) for (const ex of set) for (const t of ex.tokens) if (t > max) max = t;
  return max >= 100_277 ? 200_019 : 100_277;
}

class BigramTrainer implements Trainer {
  private done = 0;
  private readonly model: BigramModel;
  private readonly trainPairs: Int32Array[];
  private readonly validPairs: Int32Array[] | null;
  private readonly lr: number;
  private permEpoch = -1;
  private perm: Uint32Array = new Uint32Array(0);
  private validRound = -1;
  private validPerm: Uint32Array = new Uint32Array(0);
  private last: StepMetrics | null = null;

  constructor(
    train: TokenizedExample[],
    valid: TokenizedExample[] | null,
    readonly plan: TrainingPlan,
    private readonly seed: number,
  ) {
    this.trainPairs = train.map(pairsOf);
    this.validPairs = valid && valid.length > 0 ? valid.map(pairsOf) : null;
    this.model = new BigramModel(vocabFor(valid ? [train, valid] : [train]));
    this.lr = plan.learningRateMultiplier > 0 ? plan.learningRateMultiplier : 1;
  }

  get stepsDone(): number {
    return this.done;
  }

  isEpochEnd(step: number): boolean {
    return step > 0 && step % this.plan.stepsPerEpoch === 0;
  }

  /** Example indices of step `step` (1-based). */
  private batch(step: number): Uint32Array {
    const n = this.trainPairs.length;
    const epoch = Math.floor((step - 1) / this.plan.stepsPerEpoch);
    if (epoch !== this.permEpoch) {
      this.perm = permutation(n, mixSeed(this.seed, STREAM_TRAIN, epoch));
      this.permEpoch = epoch;
    }
    const b = (step - 1) % this.plan.stepsPerEpoch;
    const from = Math.min(n, b * this.plan.batchSize);
    return this.perm.subarray(from, Math.min(n, from + this.plan.batchSize));
  }

  /** Validation sample of step `step`: the next min(batch_size, n) examples of seeded shuffles of the validation set. */
  private validSample(step: number): number[] {
    const n = this.validPairs!.length;
    const size = Math.min(n, Math.max(1, this.plan.batchSize));
    const out: number[] = [];
    for (let j = 0; j < size; j++) {
      const g = (step - 1) * size + j;
      const r = Math.floor(g / n);
      if (r !== this.validRound) {
        this.validPerm = permutation(n, mixSeed(this.seed, STREAM_VALID, r));
        this.validRound = r;
      }
      out.push(this.validPerm[g % n]);
    }
    return out;
  }

  private measureSet(sets: Int32Array[], indices: Iterable<number>): { loss: number; acc: number } {
    const acc = { loss: 0, correct: 0, n: 0 };
    for (const i of indices) this.model.measure(sets[i], acc);
    if (acc.n === 0) return { loss: 0, acc: 0 };
    return { loss: round6(acc.loss / acc.n), acc: round6(acc.correct / acc.n) };
  }

  private advance(measure: boolean): StepMetrics | null {
    if (this.done >= this.plan.totalSteps) {
      throw new Error(`training is complete: all ${this.plan.totalSteps} steps are done`);
    }
    const step = this.done + 1;
    const batch = this.batch(step);
    let metrics: StepMetrics | null = null;
    if (measure) {
      const train = this.measureSet(this.trainPairs, batch);
      metrics = { step, train_loss: train.loss, train_mean_token_accuracy: train.acc };
      if (this.validPairs) {
        const v = this.measureSet(this.validPairs, this.validSample(step));
        metrics.valid_loss = v.loss;
        metrics.valid_mean_token_accuracy = v.acc;
      }
    }
    for (const i of batch) this.model.update(this.trainPairs[i], this.lr);
    this.done = step;
    return metrics;
  }

  step(): StepMetrics {
    const m = this.advance(true)!;
    this.last = m;
    return { ...m };
  }

  fastForward(steps: number): void {
    const target = Math.min(Math.max(0, Math.floor(steps)), this.plan.totalSteps);
    if (target < this.done) throw new Error(`cannot fast-forward back to step ${target}: ${this.done} steps are done`);
    while (this.done < target) {
      if (this.done + 1 === target) this.last = this.advance(true);
      else this.advance(false);
    }
  }

  checkpointMetrics(): CheckpointMetrics {
    let base: StepMetrics;
    if (this.last) base = { ...this.last };
    else {
      // Before the first step: the first batch, measured without training.
      const train = this.measureSet(this.trainPairs, this.done < this.plan.totalSteps ? this.batch(1) : []);
      base = { step: 0, train_loss: train.loss, train_mean_token_accuracy: train.acc };
    }
    const out: CheckpointMetrics = base;
    if (this.validPairs) {
      const full = this.measureSet(this.validPairs, this.validPairs.keys());
      out.full_valid_loss = full.loss;
      out.full_valid_mean_token_accuracy = full.acc;
    }
    return out;
  }
}

export function createTrainer(train: TokenizedExample[], valid: TokenizedExample[] | null, plan: TrainingPlan, seed: number): Trainer {
  return new BigramTrainer(train, valid, plan, Number.isFinite(seed) ? seed : 0);
}
