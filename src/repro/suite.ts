/**
 * What a reproduction suite is: a paper's comparison at toy scale, as data. A suite names its
 * scale (a small table of numbers), the training runs it needs for a list of seeds (every arm of
 * a comparison gets the same seeds, so differences pair up seed by seed), the per-run metrics of
 * its tables, the claims it tests (each a signed quantity per seed and the sign the paper
 * predicts) and the curves it plots. Runs and their results are plain JSON, so that a run can be
 * executed in another process and a finished one is never repeated.
 */
import type { ModelConfig } from "../nn/config.ts";
import type { Direction } from "./verdict.ts";
import type { Point } from "./curve.ts";

/** Options of one `mj.train.train` call, as JSON. */
export interface TrainSpec {
  /** The model (absent when the run starts from other runs' parameters: see `init`). */
  model?: Partial<ModelConfig>;
  /** Corpus name(s) joined by "+" (a mixture in equal parts, validated per domain). */
  data: string;
  tokenizer?: string;
  steps: number;
  batch: number;
  seq: number;
  lr: number;
  /** Evaluate every this many steps (the validation curve's points). */
  evalEvery: number;
  /** Validation batches per evaluation and per domain (intermediate and final alike). */
  evalBatches: number;
  /** Read metrics back every this many steps (1 for per-step MaxVio). */
  logEvery: number;
  /** Write a checkpoint every this many steps (what a killed run resumes from). */
  checkpointEvery: number;
}

/** Continue from another run's final parameters (a fresh optimizer and schedule). */
export interface ContinueInit {
  kind: "continue";
  /** The run whose checkpoint to start from. */
  from: string;
  /** That run's model, so that a timing probe can build it without the checkpoint. */
  model: Partial<ModelConfig>;
}

/** Upcycle dense runs into a mixture (BAM / BTX) and train it. */
export interface UpcycleInit {
  kind: "upcycle";
  /** The dense seed run and the specialised runs (expert 0 is the seed). */
  seed: string;
  experts: string[];
  method: "bam" | "btx";
  attention?: "kvExperts" | "sharedKV";
  topK?: number;
  /** The dense runs' model (for timing probes). */
  model: Partial<ModelConfig>;
}

/** One training run of a suite. */
export interface RunSpec {
  /** Unique within the suite and usable as a relative path: "8c1/topk/seed-0". */
  id: string;
  /** The comparison it belongs to (e.g. a sparsity) and its arm within it. */
  group: string;
  arm: string;
  /** Changes initialisation, data order and sampling noise; shared by the arms of a comparison. */
  seed: number;
  train: TrainSpec;
  init?: ContinueInit | UpcycleInit;
}

/**
 * The runs a run starts from (they must finish first).
 *
 * @example
 * ```ts
 * needsOf(bamMixtureSpec); // ["bam/seed/seed-0", "bam/branch-moby-dick/seed-0", …]
 * ```
 */
export function needsOf(spec: RunSpec): string[] {
  if (!spec.init) return [];
  return spec.init.kind === "continue" ? [spec.init.from] : [spec.init.seed, ...spec.init.experts];
}

/** A point of a validation curve. */
export interface CurveRecord {
  step: number;
  tokens: number;
  /** Validation perplexity (the mean loss over domains, exponentiated). */
  ppl: number;
  byDomain?: Record<string, number>;
}

/** A logged training step. */
export interface StepRecord {
  step: number;
  loss: number;
  ce: number;
  /** MaxVio_batch averaged over MoE layers, and its maximum over layers. */
  maxVioMean?: number;
  maxVioMax?: number;
}

/** What a finished run leaves: everything the report needs, as JSON. */
export interface RunResult {
  id: string;
  spec: RunSpec;
  /** Final validation perplexity (mean loss over domains, exponentiated) and per domain. */
  ppl: number;
  pplByDomain: Record<string, number>;
  /** The validation curve, ending with the final evaluation. */
  curve: CurveRecord[];
  /** Every logged step. */
  steps: StepRecord[];
  /** MaxVio_global over the validation split(s), averaged over MoE layers, and per layer. */
  maxVioGlobal?: number;
  maxVioGlobalByLayer?: number[];
  /** Median seconds per training step (compilation and evaluation excluded). */
  stepSeconds: number;
  /** Tokens trained on. */
  tokens: number;
  params: { total: number; active: number };
  /** Training FLOPs per token (see compute.ts). */
  flopsPerToken: number;
  /** Wall seconds of the run, summed over its sessions (a resumed run has several). */
  wallSeconds: number;
  sessions: number;
  backend: string;
  /** The WebGPU adapter's description, when the backend is webgpu. */
  adapter: string | null;
  /** The 1-minute load average when the run's last session started and ended. */
  load: [number, number];
  /**
   * The native backend's threads and BLAS library (null: moejit's own sgemm) in the run's last
   * session: a run repeats bit for bit only with the same ones. Absent on other backends and in
   * results written before it was recorded.
   */
  native?: { threads: number; blas: string | null };
  /**
   * The moejit commit the run's last session ran ("…+changes" with uncommitted changes); absent
   * in results written before it was recorded, or outside a git checkout.
   */
  commit?: string;
}

/** An arm of a comparison. */
export interface ArmInfo {
  key: string;
  label: string;
}

/** A comparison: a group of arms run with the same seeds. */
export interface GroupInfo {
  key: string;
  label: string;
  arms: ArmInfo[];
}

/** A per-run metric shown in the suite's tables. */
export interface Column {
  key: string;
  label: string;
  value: (r: RunResult) => number | null;
  digits: number;
  /** How a value is printed (default: fixed to `digits`). */
  format?: (v: number) => string;
  /** What a missing value means, e.g. "never" (default "–": not measured). */
  missing?: string;
}

/** A claim from a paper, tested on one group by a signed quantity per seed. */
export interface Claim {
  group: string;
  /** The paper's claim in its words (or a close paraphrase). */
  paper: string;
  /** Where it comes from (paper, table or figure). */
  source: string;
  /** What is measured, e.g. "val ppl(Default MoE) − val ppl(TopK)". */
  measured: string;
  /** The two arms; the quantity compares b against a, seed by seed. */
  a: string;
  b: string;
  /** The signed quantity for one seed (null: the event never happened within the run). */
  value: (a: RunResult, b: RunResult) => number | null;
  /** The quantity is expected below (negative) or above (positive) `threshold`. */
  expect: Direction;
  /** The bound the claim puts on the quantity (default 0), e.g. 0.02 for "under 2 % overhead". */
  threshold?: number;
  /** Formats a value of the quantity (e.g. as a percentage). */
  format: (v: number) => string;
}

/** A chart: one line per arm of a group (mean over seeds, band = min–max). */
export interface Chart {
  file: string;
  title: string;
  group: string;
  xLabel: string;
  yLabel: string;
  logY?: boolean;
  /** The arms plotted (default: every arm of the group). */
  arms?: string[];
  /**
   * Plot each arm's difference from this arm, seed by seed (the paired comparison), at the x
   * values both runs of a seed have.
   */
  baseline?: string;
  series: (r: RunResult) => Point[];
}

/** A suite's scale: a small table of numbers, each documented. */
export type Scale = Record<string, number>;

/** A reproduction suite. */
export interface Suite {
  name: string;
  title: string;
  /** One paragraph: what the papers did and what this suite runs. */
  summary: string;
  /** The default scale, the quick scale (a harness check) and what each entry means. */
  scale: Scale;
  quick: Scale;
  scaleDoc: Record<string, string>;
  groups: (s: Scale) => GroupInfo[];
  runs: (s: Scale, seeds: readonly number[]) => RunSpec[];
  columns: Column[];
  claims: (s: Scale) => Claim[];
  charts: (s: Scale) => Chart[];
  /** Deviations from the papers' setups and the choices the papers leave open. */
  notes: (s: Scale) => string[];
}
