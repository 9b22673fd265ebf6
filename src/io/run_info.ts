/**
 * What a checkpoint records about the run that wrote it, for the files that explain it: the
 * tokenizer (config.json's special ids, the README), the sequence length and the optimizer
 * settings (megatron_args.txt, the README). Everything is optional: a checkpoint saved from a
 * script without a training run still gets its files, saying what is not known.
 */
import { fail } from "../errors.ts";
import type { TokenizerRef } from "./hf.ts";

/** The training run behind a checkpoint. */
export interface RunInfo {
  /** The tokenizer the model was trained with. */
  tokenizer?: TokenizerRef;
  /** What it was trained on (a corpus name, a path, or a "+"-joined mixture). */
  data?: string;
  /** Tokens per training sequence. */
  seqLength?: number;
  /** Sequences per optimizer step. */
  batch?: number;
  /** The step this checkpoint holds. */
  step?: number;
  /** The run's planned total of steps. */
  steps?: number;
  /** Peak learning rate, final learning rate and linear warmup steps of the cosine schedule. */
  lr?: number;
  minLr?: number;
  warmup?: number;
  /** AdamW's decoupled weight decay (none on norms and biases) and moments. */
  weightDecay?: number;
  adam?: { beta1: number; beta2: number; eps: number };
  /** Global gradient-norm clip (0: none). */
  clip?: number;
  /** Seed of the initialisation, the batches and the sampling noise. */
  seed?: number;
}

const KEYS = [
  "tokenizer",
  "data",
  "seqLength",
  "batch",
  "step",
  "steps",
  "lr",
  "minLr",
  "warmup",
  "weightDecay",
  "adam",
  "clip",
  "seed",
];

/**
 * Checks a RunInfo (known keys, numbers where numbers go); `op` names the caller in errors.
 *
 * @example
 * ```ts
 * checkRunInfo("saveCheckpoint", { tokenizer: { name: "byte" }, seqLength: 128 });
 * ```
 */
export function checkRunInfo(op: string, run: unknown): RunInfo {
  if (run === null || typeof run !== "object" || Array.isArray(run)) {
    fail(op, `run must be an object (tokenizer, seqLength, lr, …), got ${JSON.stringify(run)}`);
  }
  const r = run as Record<string, unknown>;
  for (const k of Object.keys(r)) {
    if (!KEYS.includes(k)) {
      fail(op, `unknown run field ${JSON.stringify(k)}; expected one of ${KEYS.join(", ")}`);
    }
  }
  for (
    const k of [
      "seqLength",
      "batch",
      "step",
      "steps",
      "lr",
      "minLr",
      "warmup",
      "weightDecay",
      "clip",
      "seed",
    ]
  ) {
    const v = r[k];
    if (v !== undefined && (typeof v !== "number" || !Number.isFinite(v) || v < 0)) {
      fail(op, `run.${k} must be a finite number ≥ 0, got ${JSON.stringify(v)}`);
    }
  }
  const t = r.tokenizer as Record<string, unknown> | undefined;
  if (t !== undefined && (t === null || typeof t !== "object" || typeof t.name !== "string")) {
    fail(op, `run.tokenizer must be { name, endOfText? }, got ${JSON.stringify(t)}`);
  }
  return r as RunInfo;
}
