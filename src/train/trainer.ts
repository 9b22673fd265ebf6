/**
 * The training loop of the MoE language model, shared by the examples (grin.ts, default_moe.ts)
 * and usable on its own: data, the compiled step, AdamW with warmup + cosine, evaluation,
 * metrics (JSONL), plots (SVG), checkpoints (Hugging Face layout, crash-safe, checked), resume,
 * Ctrl-C in every phase, and a stop at the first step whose loss or gradient norm is not finite.
 *
 * Reproducibility: batch i, the sampling noise of step i and the learning rate of step i are
 * pure functions of (seed, i) and the saved schedule, and the checkpoint holds the parameters,
 * AdamW moments and MoE layer states exactly, so a run stopped after N steps and resumed for M
 * more reproduces the N+M-step run bit for bit (same backend).
 */
import "../runtime/all.ts";
import { fail, formatValue, MoejitError } from "../errors.ts";
import { backendName, getBackend } from "../backend.ts";
import type { Tensor } from "../tensor.ts";
import { realize } from "../realize.ts";
import { type ModelConfig, modelConfig, parameterCount } from "../nn/config.ts";
import { initParams, type Params } from "../nn/model.ts";
import { adamw, type AdamWState, cosineSchedule } from "../nn/optim.ts";
import { generate } from "../nn/generate.ts";
import type { LayerState } from "../moe/layer.ts";
import { aggregate, maxVio } from "../moe/metrics.ts";
import {
  batchTensors,
  prepareData,
  type PreparedData,
  type TokenDataset,
  unigramPerplexity,
} from "../data/dataset.ts";
import { type BatchSource, type PreparedMixture, prepareMixture } from "../data/mixture.ts";
import type { Corpus } from "../data/corpus.ts";
import type { Tokenizer } from "../data/tokenizer.ts";
import {
  checkpointExists,
  configDifferences,
  loadCheckpoint,
  NonFiniteCheckpoint,
  saveCheckpoint,
} from "../io/checkpoint.ts";
import { MetricsLog, readMetrics } from "../io/metrics.ts";
import { hfMatch } from "../io/hf_families.ts";
import { writeFileAtomic } from "../io/files.ts";
import { evaluate } from "./evaluate.ts";
import { StopRequests, TrainInterrupted, yieldToEventLoop } from "./interrupt.ts";
import {
  initLayerState,
  type StepMetrics,
  type TrainState,
  trainStep,
  unpackMetrics,
} from "./step.ts";
import { formatDuration, Progress } from "./progress.ts";
import { writeReportPlots } from "./report.ts";

/** Options of a training run; every field has a default (see TRAIN_DEFAULTS). */
export interface TrainOptions {
  /** Model fields that differ from DEFAULT_CONFIG (vocabSize comes from the tokenizer). */
  model?: Partial<ModelConfig>;
  /**
   * A built-in corpus name ("moby-dick", "sotu", "spam-assassin"), a file or folder, several
   * joined by "+" (a mixture in equal parts, validated per domain), a Corpus, or data prepared
   * with mj.data.prepareData / prepareMixture.
   */
  data?: string | Corpus | PreparedData | PreparedMixture;
  /** "byte" or "bpe[:encoding]", or a Tokenizer. */
  tokenizer?: string | Tokenizer;
  /**
   * Optimizer steps in total (a resumed run continues up to this step; it keeps the checkpoint's
   * schedule, so `steps` only sets where it stops).
   */
  steps?: number;
  /** Sequences per batch. */
  batch?: number;
  /** Tokens per sequence (the model's maxSeqLen). */
  seq?: number;
  /** Peak learning rate of the warmup + cosine schedule (given on resume: changes it). */
  lr?: number;
  /** Final learning rate (default lr/10). */
  minLr?: number;
  /** Warmup steps (default 5% of steps, at most 100). */
  warmup?: number;
  weightDecay?: number;
  /** Global gradient-norm clip (0 disables). */
  clip?: number;
  /** Seed of the initialisation, the batches and the sampling noise. */
  seed?: number;
  /** Output directory: metrics.jsonl, plots, checkpoint/ (default out/run). */
  out?: string;
  /** A checkpoint directory to resume from. */
  resume?: string;
  /**
   * Start from these parameters (e.g. a pretrained or upcycled model) with a fresh optimizer
   * and schedule; the model is `init.config` (then `model` must not be given).
   */
  init?: { config: ModelConfig; params: Params; layers?: LayerState[] };
  /** Evaluate on the validation split every this many steps (0: only at the end). */
  evalEvery?: number;
  /** Validation batches per intermediate evaluation (per domain). */
  evalBatches?: number;
  /** Validation batches of the final evaluation, spread over each split (default 256). */
  finalEvalBatches?: number;
  /** Read metrics back and log them every this many steps. */
  logEvery?: number;
  /** Write a checkpoint every this many steps (0: only at the end and on interrupt). */
  checkpointEvery?: number;
  /** Texts to sample at the end (0 to skip). */
  samples?: number;
  /** Tokens per sample. */
  sampleTokens?: number;
  /**
   * Stop early, e.g. from an AbortController: after the step in flight (a checkpoint is written
   * first), or, before the first step, at once with TrainInterrupted (nothing written).
   */
  signal?: AbortSignal;
  /** Install a Ctrl-C handler that stops the run as `signal` does (default true). */
  handleInterrupt?: boolean;
  /** Progress display: true (bar or plain lines), false (silent). */
  progress?: boolean;
  /** Called with every logged record. */
  onLog?: (record: LogRecord) => void;
}

/** Defaults of `train` (the README's first command trains with these in under 10 minutes). */
export const TRAIN_DEFAULTS = {
  data: "moby-dick",
  tokenizer: "byte",
  steps: 600,
  batch: 16,
  seq: 128,
  lr: 3e-3,
  weightDecay: 0.1,
  clip: 1,
  seed: 0,
  out: "out/run",
  evalEvery: 200,
  evalBatches: 8,
  finalEvalBatches: 256,
  logEvery: 10,
  checkpointEvery: 200,
  samples: 3,
  sampleTokens: 160,
};

const OPTION_KEYS = [
  ...Object.keys(TRAIN_DEFAULTS),
  "model",
  "minLr",
  "warmup",
  "resume",
  "init",
  "signal",
  "handleInterrupt",
  "progress",
  "onLog",
];

/** One logged step (a line of metrics.jsonl). */
export interface LogRecord {
  step: number;
  loss: number;
  ce: number;
  lr: number;
  grad_norm: number;
  tokens_per_sec: number;
  elapsed_s: number;
  /** Per MoE layer: tokens_per_expert, max_vio, load_balancing_loss, z_loss, … */
  layers: StepMetrics["layers"];
  /** The scalar layer metrics (max_vio, …) averaged over MoE layers (absent without MoE layers). */
  layers_mean?: Record<string, number>;
  /** Their maximum over MoE layers. */
  layers_max?: Record<string, number>;
  /** Mean over validation domains of the next-token loss, and its exp. */
  val_loss?: number;
  val_ppl?: number;
  /** Perplexity per validation domain (mixtures). */
  val_ppl_by_domain?: Record<string, number>;
}

/** Balance of one MoE layer over the validation split. */
export interface LayerBalance {
  layer: number;
  /** MaxVio_global: loads summed over the whole validation split. */
  maxVioGlobal: number;
  /** The loads (token, slot pairs per expert) over the validation split. */
  tokensPerExpert: number[];
  /** MaxVio_batch at the last training step. */
  maxVioLastStep: number;
}

/** What a run returns. */
export interface TrainResult {
  config: ModelConfig;
  params: Params;
  layers: LayerState[];
  /** The last completed step. */
  step: number;
  /** The learning-rate schedule the run followed (a resumed run keeps its checkpoint's). */
  schedule: Schedule;
  /** True when the run was stopped early (signal or Ctrl-C). */
  interrupted: boolean;
  /** Validation loss (mean over domains) and its exp. */
  valLoss: number;
  valPpl: number;
  /**
   * Perplexity of the train-split byte/token unigram distribution on the same validation
   * split(s) (geometric mean over domains).
   */
  unigramPpl: number;
  /** Every validation domain on its own. */
  valByDomain: { name: string; loss: number; ppl: number; unigramPpl: number; tokens: number }[];
  balance: LayerBalance[];
  /** Mean training throughput (tokens per second) of this run's steps. */
  tokensPerSec: number;
  seconds: number;
  paths: { out: string; checkpoint: string; metrics: string; plots: string[]; samples?: string };
  samples: { prompt: string; text: string }[];
  tokenizer: Tokenizer;
  backend: string;
}

/** What each numeric option of a run accepts (the CLI checks its flags against the same rules). */
export const NUMERIC_RUN_OPTIONS: Record<
  string,
  { integer: boolean; min: number; minExclusive?: boolean; max?: number }
> = {
  steps: { integer: true, min: 1 },
  batch: { integer: true, min: 1 },
  seq: { integer: true, min: 1 },
  lr: { integer: false, min: 0, minExclusive: true },
  minLr: { integer: false, min: 0 },
  warmup: { integer: true, min: 0 },
  weightDecay: { integer: false, min: 0 },
  clip: { integer: false, min: 0 },
  seed: { integer: true, min: 0, max: 2 ** 32 - 1 },
  evalEvery: { integer: true, min: 0 },
  evalBatches: { integer: true, min: 1 },
  finalEvalBatches: { integer: true, min: 1 },
  logEvery: { integer: true, min: 1 },
  checkpointEvery: { integer: true, min: 0 },
  samples: { integer: true, min: 0 },
  sampleTokens: { integer: true, min: 0 },
};

/**
 * What is wrong with a value of a numeric run option, as "must be an integer ≥ 1, got -1", or
 * null when it is fine.
 *
 * @example
 * ```ts
 * runOptionProblem("steps", -1); // "must be an integer ≥ 1, got -1"
 * ```
 */
export function runOptionProblem(name: string, v: unknown): string | null {
  const rule = NUMERIC_RUN_OPTIONS[name];
  if (!rule) return null;
  const what = `${rule.integer ? "an integer" : "a finite number"} ${
    rule.minExclusive ? ">" : "≥"
  } ${rule.min}${rule.max !== undefined ? ` and ≤ ${rule.max}` : ""}`;
  const ok = typeof v === "number" && Number.isFinite(v) &&
    (!rule.integer || Number.isInteger(v)) &&
    (rule.minExclusive ? v > rule.min : v >= rule.min) &&
    (rule.max === undefined || v <= rule.max);
  return ok ? null : `must be ${what}, got ${formatValue(v)}`;
}

function checkOptions(o: TrainOptions): void {
  for (const k of Object.keys(o)) {
    if (!OPTION_KEYS.includes(k)) {
      fail(
        "train",
        `unknown option ${JSON.stringify(k)}; expected one of ${OPTION_KEYS.join(", ")}`,
      );
    }
  }
  for (const k of Object.keys(NUMERIC_RUN_OPTIONS)) {
    const v = (o as Record<string, unknown>)[k];
    const problem = v === undefined ? null : runOptionProblem(k, v);
    if (problem) fail("train", `${k} ${problem}`);
  }
  if (typeof o.out === "string" && o.out.trim() === "") fail("train", `out must be a path, got ""`);
}

/** The learning-rate schedule of a run: warmup, then cosine from lr to minLr at step total. */
export interface Schedule {
  lr: number;
  minLr: number;
  warmup: number;
  total: number;
}

function checkSchedule(s: Schedule, from: string): void {
  if (s.minLr > s.lr) {
    fail(
      "train",
      `minLr ${s.minLr} is above lr ${s.lr}${from}: the schedule decays from lr to minLr, so minLr must be ≤ lr`,
    );
  }
}

/**
 * Makes sure the output directory can be written before anything else runs: one line naming
 * the directory and the problem, never a stack trace from the first write.
 */
async function prepareOut(out: string): Promise<void> {
  const bad = (msg: string): never => fail("train", `out ${out}: ${msg}`);
  try {
    const info = await Deno.stat(out);
    if (!info.isDirectory) bad("it is a file, not a directory; give a directory for the outputs");
  } catch (e) {
    if (e instanceof MoejitError) throw e;
    if (!(e instanceof Deno.errors.NotFound)) bad(`cannot use it (${(e as Error).message})`);
  }
  try {
    await Deno.mkdir(out, { recursive: true });
  } catch (e) {
    bad(`cannot create the directory (${(e as Error).message.replace(/: mkdir .*$/, "")})`);
  }
  const probe = join(out, `.moejit-write-test-${Date.now().toString(36)}`);
  try {
    await Deno.writeTextFile(probe, "");
    await Deno.remove(probe);
  } catch (e) {
    bad(`cannot write there (${(e as Error).message.replace(/: open .*$/, "")})`);
  }
}

function join(dir: string, file: string): string {
  return dir.endsWith("/") ? dir + file : `${dir}/${file}`;
}

/** What a run trains on and validates against, whatever form the data option took. */
interface TrainData {
  name: string;
  tokenizer: Tokenizer;
  train: BatchSource;
  /** Validation splits with the training tokens of their domain (for the unigram baseline). */
  vals: { name: string; set: TokenDataset; trainTokens: Int32Array }[];
}

async function trainData(
  data: TrainOptions["data"],
  tokenizer: TrainOptions["tokenizer"],
): Promise<TrainData> {
  const single = (d: PreparedData): TrainData => ({
    name: d.corpus,
    tokenizer: d.tokenizer,
    train: d.train,
    vals: [{ name: d.corpus, set: d.val, trainTokens: d.train.tokens }],
  });
  const mixture = (m: PreparedMixture): TrainData => ({
    name: m.name,
    tokenizer: m.tokenizer,
    train: m.train,
    vals: m.domains.map((d) => ({ name: d.corpus, set: d.val, trainTokens: d.train.tokens })),
  });
  if (data && typeof data === "object" && "train" in data) {
    return "domains" in data ? mixture(data as PreparedMixture) : single(data as PreparedData);
  }
  if (typeof data === "string" && data.includes("+")) {
    return mixture(await prepareMixture(data.split("+").map((x) => x.trim()), { tokenizer }));
  }
  return single(await prepareData({ corpus: data as string | Corpus | undefined, tokenizer }));
}

/** Evaluates on every validation domain; the loss is their mean. */
async function evaluateAll(
  data: TrainData,
  params: Params,
  config: ModelConfig,
  layers: LayerState[],
  B: number,
  S: number,
  maxBatches: number,
  shouldStop?: () => boolean,
) {
  const byDomain = [];
  for (const v of data.vals) {
    byDomain.push({
      name: v.name,
      ...(await evaluate(params, config, v.set, {
        batch: B,
        seq: S,
        maxBatches,
        layers,
        shouldStop,
      })),
    });
  }
  const loss = byDomain.reduce((a, d) => a + d.loss, 0) / byDomain.length;
  const counts: number[][] = [];
  for (const d of byDomain) {
    d.counts.forEach((c, l) => {
      counts[l] ??= new Array(c.length).fill(0);
      c.forEach((x, e) => (counts[l][e] += x));
    });
  }
  return { loss, ppl: Math.exp(loss), byDomain, counts, stopped: byDomain.some((d) => d.stopped) };
}

/** Reads the metrics vectors of the steps since the last log in one batch. */
async function readStepMetrics(pending: Tensor[], config: ModelConfig): Promise<StepMetrics[]> {
  const values = await (await getBackend()).realize(pending.map((t) => t.node));
  return values.map((v) => unpackMetrics(v as Float32Array, config));
}

/** The first step of a batch of read-back metrics whose loss or gradient norm is not finite. */
function firstNonFinite(ms: StepMetrics[], firstStep: number) {
  const k = ms.findIndex((m) => m.nonFinite.length > 0);
  return k < 0 ? null : { step: firstStep + k, metrics: ms[k] };
}

/** The schedule a resumed run follows: the checkpoint's, with what this run sets explicitly. */
function resumedSchedule(
  saved: Partial<Schedule> & { steps?: number },
  opts: TrainOptions,
  say: (line: string) => void,
): Schedule {
  // Checkpoints from before schedules were saved hold the run's steps and lr.
  const total = saved.total ?? saved.steps ?? opts.steps ?? TRAIN_DEFAULTS.steps;
  const lr = saved.lr ?? TRAIN_DEFAULTS.lr;
  const was: Schedule = {
    lr,
    minLr: saved.minLr ?? lr / 10,
    warmup: saved.warmup ?? Math.min(100, Math.round(total * 0.05)),
    total,
  };
  const now: Schedule = {
    lr: opts.lr ?? was.lr,
    minLr: opts.minLr ?? (opts.lr !== undefined ? opts.lr / 10 : was.minLr),
    warmup: opts.warmup ?? was.warmup,
    total: was.total,
  };
  const changed = (["lr", "minLr", "warmup"] as const).filter((k) => now[k] !== was[k]);
  if (changed.length) {
    say(
      `the schedule changes on resume: ${
        changed.map((k) => `${k} ${was[k]} → ${now[k]}`).join(", ")
      } (from the next step on)`,
    );
  }
  const steps = opts.steps ?? TRAIN_DEFAULTS.steps;
  if (steps !== total) {
    say(
      `resuming the ${total}-step schedule (warmup ${now.warmup}, lr ${now.lr} → ${now.minLr}); ` +
        `steps ${steps} only sets where this run stops` +
        (steps > total ? ` (past step ${total} the learning rate stays at ${now.minLr})` : ""),
    );
  }
  return now;
}

/**
 * Trains the MoE language model. Everything has a default: `await train()` trains the default
 * small GRIN model (SparseMixer-v2, top-2 of 8 experts, aux loss) on Moby Dick, byte-level.
 *
 * Every step's loss and global gradient norm are tested for NaN/±Inf (on their bits, inside the
 * compiled step, read back with the metrics); the first non-finite step stops the run with an
 * error naming the step and the quantity, and the last checkpoint — written only after every
 * step up to it checked out, and never with non-finite values — is kept. Ctrl-C (or `signal`)
 * is honoured in every phase: before the first step the run ends with nothing written
 * (`TrainInterrupted`); after it, the step in flight finishes, a checkpoint is written and the
 * run returns with `interrupted: true`. A resumed run keeps the checkpoint's learning-rate
 * schedule (`steps` only says where to stop; `lr`, `minLr`, `warmup` given explicitly change it,
 * and the run says so).
 *
 * @example
 * ```ts
 * const r = await mj.train.train({ steps: 200, model: { estimator: "default" }, out: "out/demo" });
 * console.log(r.valPpl, r.unigramPpl, r.paths.checkpoint);
 * ```
 */
export async function train(opts: TrainOptions = {}): Promise<TrainResult> {
  checkOptions(opts);
  const o = { ...TRAIN_DEFAULTS, ...opts } as ResolvedOptions;
  const started = performance.now();
  const show = opts.progress ?? true;
  const say = (text: string) => show && console.error(text);
  // From the first line on, Ctrl-C asks the run to stop at the next safe point.
  const stop = new StopRequests({
    signal: opts.signal,
    sigint: opts.handleInterrupt ?? true,
  });
  try {
    return await trainRun(opts, o, { started, show, say, stop });
  } finally {
    stop.dispose();
  }
}

/** The options of a run with every default filled in. */
type ResolvedOptions =
  & Omit<TrainOptions, keyof typeof TRAIN_DEFAULTS>
  & {
    [K in keyof typeof TRAIN_DEFAULTS]-?: NonNullable<TrainOptions[K]>;
  };

async function trainRun(
  opts: TrainOptions,
  o: ResolvedOptions,
  ctx: { started: number; show: boolean; say: (text: string) => void; stop: StopRequests },
): Promise<TrainResult> {
  const { started, show, say, stop } = ctx;
  const stopBeforeTraining = async (phase: string) => {
    await yieldToEventLoop();
    if (stop.reason) {
      throw new TrainInterrupted(`${stop.reason} ${phase}, before step 1: nothing was written`);
    }
  };
  if (opts.init && opts.model) {
    fail(
      "train",
      "give either model (a new model) or init (start from given parameters), not both",
    );
  }
  if (opts.init && opts.resume) fail("train", "give either init or resume, not both");
  if (!opts.resume) {
    checkSchedule({ lr: o.lr, minLr: opts.minLr ?? o.lr / 10, warmup: 0, total: o.steps }, "");
  }
  await prepareOut(o.out);

  if (typeof o.data === "string") say(`loading ${o.data}…`);
  const data = await trainData(o.data, o.tokenizer);
  await stopBeforeTraining("while loading the data");
  const B = o.batch, S = o.seq;
  // Every split must hold a window; the errors name the split and the sizes.
  data.train.batch(1, S, 0, o.seed);
  for (const v of data.vals) v.set.evalBatches(1, S, 1);

  if (opts.init && opts.init.config.vocabSize !== data.tokenizer.vocabSize) {
    fail(
      "train",
      `init's model has a vocabulary of ${opts.init.config.vocabSize} but the tokenizer ${data.tokenizer.name} has ${data.tokenizer.vocabSize}`,
    );
  }
  let config = modelConfig({
    ...(opts.init ? opts.init.config : opts.model ?? {}),
    vocabSize: data.tokenizer.vocabSize,
    maxSeqLen: S,
  });
  const adam = { beta1: 0.9, beta2: 0.95, eps: 1e-8 };
  const optimizer = adamw({ ...adam, weightDecay: o.weightDecay });
  let state: TrainState;
  let startStep = 0;
  let schedule: Schedule = {
    lr: o.lr,
    minLr: opts.minLr ?? o.lr / 10,
    warmup: opts.warmup ?? Math.min(100, Math.round(o.steps * 0.05)),
    total: o.steps,
  };
  if (opts.resume) {
    const ck = await loadCheckpoint<Params>(opts.resume);
    for (const note of ck.recovered) say(`${opts.resume}: ${note}`);
    // What this run asks, over the checkpoint's settings (not the defaults: a setting nobody
    // gave is the checkpoint's).
    const asked = opts.init ? config : modelConfig({
      ...ck.config,
      ...(opts.model ?? {}),
      vocabSize: data.tokenizer.vocabSize,
      maxSeqLen: S,
    });
    const diffs = configDifferences(ck.config, asked);
    if (diffs.length) fail("train", `cannot resume from ${opts.resume}: ${diffs.join("; ")}`);
    for (const k of Object.keys(opts.model ?? {}) as (keyof ModelConfig)[]) {
      if (JSON.stringify(ck.config[k]) !== JSON.stringify(asked[k])) {
        fail(
          "train",
          `cannot resume from ${opts.resume}: ${k} is ${
            formatValue(ck.config[k])
          } in the checkpoint but ${formatValue(asked[k])} was asked`,
        );
      }
    }
    config = ck.config;
    const ts = ck.trainingState;
    if (!ts) {
      fail(
        "train",
        `cannot resume from ${opts.resume}: it has no training state (a model-only checkpoint); start a new run from it instead`,
      );
    }
    const json = ts.json as {
      step?: number;
      seed?: number;
      batch?: number;
      seq?: number;
      steps?: number;
      lr?: number;
      schedule?: Partial<Schedule>;
    };
    if (json.batch !== undefined && json.batch !== B) {
      fail(
        "train",
        `cannot resume from ${opts.resume}: batch is ${json.batch} in the checkpoint but ${B} in this run`,
      );
    }
    if (json.seed !== undefined && json.seed !== o.seed) {
      fail(
        "train",
        `cannot resume from ${opts.resume}: seed is ${json.seed} in the checkpoint but ${o.seed} in this run`,
      );
    }
    schedule = resumedSchedule(
      { ...json.schedule, steps: json.steps, lr: json.schedule?.lr ?? json.lr },
      opts,
      say,
    );
    checkSchedule(schedule, ` (resuming ${opts.resume})`);
    const tensors = ts.tensors as { opt: AdamWState<Params>; layers: LayerState[] };
    startStep = json.step ?? 0;
    state = await realize({ params: ck.params, opt: tensors.opt, layers: tensors.layers ?? [] });
    say(`resumed from ${opts.resume} at step ${startStep}`);
  } else {
    const params = opts.init ? opts.init.params : initParams(config, o.seed);
    state = await realize({
      params,
      opt: optimizer.init(params),
      layers: opts.init?.layers ?? initLayerState(params, config),
    });
  }
  await stopBeforeTraining("while building the model");
  if (startStep >= o.steps) {
    say(`the checkpoint is at step ${startStep}; nothing to train up to step ${o.steps}`);
  }

  const lrAt = cosineSchedule(schedule);
  const step = trainStep(config, { optimizer, clip: o.clip, seed: o.seed });

  const out = o.out;
  const paths = {
    out,
    checkpoint: join(out, "checkpoint"),
    metrics: join(out, "metrics.jsonl"),
    plots: [] as string[],
    samples: undefined as string | undefined,
  };
  // A resumed run continues the log; lines past the checkpoint (logged before a crash) go.
  if (startStep > 0) {
    const rows = await readMetrics(paths.metrics).catch(() => [] as Record<string, unknown>[]);
    const kept = rows.filter((r) => typeof r.step === "number" && r.step <= startStep);
    await writeFileAtomic(paths.metrics, kept.map((r) => JSON.stringify(r) + "\n").join(""));
  }
  const log = new MetricsLog(paths.metrics, { fresh: startStep === 0 });

  // Steps whose metrics are computed but not yet read back, and the last checkpoint written.
  const pending: Tensor[] = [];
  let pendingFrom = startStep + 1;
  let lastCheckpoint: number | null = startStep > 0 ? startStep : null;
  const diverged = (step: number, m: StepMetrics): never => {
    const what = m.nonFinite.map((q) =>
      q === "loss" ? `the loss is ${m.loss}` : `the global gradient norm is ${m.grad_norm}`
    ).join(" and ");
    const kept = lastCheckpoint === null
      ? "no checkpoint was written"
      : `the last good checkpoint, ${paths.checkpoint} (step ${lastCheckpoint}), is kept`;
    return fail(
      "train",
      `diverged at step ${step}: ${what}; stopped, ${kept}. ` +
        `Try a lower learning rate (lr ${schedule.lr}) or a smaller gradient clip (clip ${o.clip})`,
    );
  };
  /** Reads the pending steps' metrics and stops at the first non-finite one. */
  const readPending = async (): Promise<StepMetrics[]> => {
    const ms = await readStepMetrics(pending.splice(0), config);
    const bad = firstNonFinite(ms, pendingFrom);
    pendingFrom += ms.length;
    if (bad) diverged(bad.step, bad.metrics);
    return ms;
  };

  const checkpoint = async (at: number) => {
    // Only a state whose every step checked out is written; saveCheckpoint refuses NaN/Inf.
    if (pending.length) {
      const ms = await readStepMetrics([...pending], config);
      const bad = firstNonFinite(ms, pendingFrom);
      if (bad) diverged(bad.step, bad.metrics);
    }
    try {
      await saveCheckpoint(paths.checkpoint, {
        config,
        params: state.params,
        trainingState: {
          tensors: { opt: state.opt, layers: state.layers },
          json: {
            step: at,
            seed: o.seed,
            batch: B,
            seq: S,
            steps: o.steps,
            lr: schedule.lr,
            schedule,
            tokenizer: data.tokenizer.name,
            data: data.name,
          },
        },
        run: {
          tokenizer: {
            name: data.tokenizer.name,
            ...(data.tokenizer.endOfText !== undefined
              ? { endOfText: data.tokenizer.endOfText }
              : {}),
          },
          data: data.name,
          seqLength: S,
          batch: B,
          step: at,
          steps: schedule.total,
          lr: schedule.lr,
          minLr: schedule.minLr,
          warmup: schedule.warmup,
          weightDecay: o.weightDecay,
          adam,
          clip: o.clip,
          seed: o.seed,
        },
      });
    } catch (e) {
      if (e instanceof NonFiniteCheckpoint) {
        const kept = lastCheckpoint === null
          ? "no checkpoint was written"
          : `the last good checkpoint, ${paths.checkpoint} (step ${lastCheckpoint}), is kept`;
        fail(
          "train",
          `diverged by step ${at}: ${e.where} holds ${e.value} (the loss and gradient norm were ` +
            `still finite); stopped, ${kept}. Try a lower learning rate (lr ${schedule.lr})`,
        );
      }
      throw e;
    }
    lastCheckpoint = at;
  };

  const backend = await backendName();
  const nParams = parameterCount(config).total;
  say(
    `moejit ${backend}: ${config.nLayers}-layer ${
      config.ffn === "moe"
        ? `MoE (${config.experts} experts, top-${config.topK}, ${config.estimator})`
        : "dense"
    }${
      config.attnExperts > 1
        ? ` + ${config.attnExperts} attention experts (${config.attention})`
        : ""
    } LM, ` +
      `d=${config.dModel}, ${
        (nParams / 1e6).toFixed(2)
      }M params; ${data.name} (${data.tokenizer.name}): ` +
      `${data.train.length.toLocaleString("en-US")} train / ${
        data.vals.reduce((a, v) => a + v.set.length, 0).toLocaleString("en-US")
      } val tokens; ` +
      `batch ${B}×${S}, ${o.steps} steps`,
  );
  // What the checkpoint will be to Hugging Face: a family that computes this model, or why none.
  say(hfMatch(config).line);
  const progress = show ? new Progress({ total: o.steps, start: startStep }) : null;
  let lastLogAt = performance.now(), lastLogStep = startStep, lastLoss: number | undefined;
  let tokensSeen = 0, trainSeconds = 0;
  let lastMetrics: StepMetrics | null = null;
  let done = startStep;
  let stopReason: string | null = null;
  // Where a stop request was seen, for the closing line.
  let stopPhase = "";
  try {
    for (let i = startStep + 1; i <= o.steps; i++) {
      if (i === startStep + 1) progress?.log(`compiling the training step (step ${i})…`);
      const b = batchTensors(data.train.batch(B, S, i - 1, o.seed), B, S);
      const lr = lrAt(i);
      const r = await step(state, b.x, b.y, lr, i);
      state = r.state;
      pending.push(r.metrics);
      done = i;
      // A Ctrl-C handler runs only when the event loop gets a turn.
      await yieldToEventLoop();
      const stopNow = stop.reason;
      if (stopNow) stopPhase = i === startStep + 1 ? "while compiling" : "while training";
      const evalNow = o.evalEvery > 0 && i % o.evalEvery === 0 && i < o.steps;
      if (i % o.logEvery === 0 || i === o.steps || stopNow || evalNow) {
        const ms = await readPending();
        const now = performance.now();
        const secs = (now - lastLogAt) / 1000;
        const tps = ((i - lastLogStep) * B * S) / Math.max(secs, 1e-9);
        trainSeconds += secs;
        tokensSeen += (i - lastLogStep) * B * S;
        lastLogAt = now;
        lastLogStep = i;
        lastMetrics = ms[ms.length - 1];
        lastLoss = lastMetrics.loss;
        const record: LogRecord = {
          step: i,
          loss: lastMetrics.loss,
          ce: lastMetrics.ce,
          lr,
          grad_norm: lastMetrics.grad_norm,
          tokens_per_sec: Math.round(tps),
          elapsed_s: Math.round((now - started) / 10) / 100,
          layers: lastMetrics.layers,
        };
        if (lastMetrics.layers.length) {
          const over = aggregate(
            lastMetrics.layers.map(({ tokens_per_expert: _, ...scalars }) =>
              scalars as Record<string, number>
            ),
          );
          record.layers_mean = over.mean;
          record.layers_max = over.max;
        }
        if (evalNow && !stopNow) {
          const ev = await evaluateAll(
            data,
            state.params,
            config,
            state.layers,
            B,
            S,
            o.evalBatches,
            () => stop.reason !== null,
          );
          if (ev.stopped) {
            stopPhase = "during evaluation";
          } else {
            record.val_loss = ev.loss;
            record.val_ppl = ev.ppl;
            if (ev.byDomain.length > 1) {
              record.val_ppl_by_domain = Object.fromEntries(
                ev.byDomain.map((d) => [d.name, d.ppl]),
              );
            }
            progress?.log(
              `step ${i}: val loss ${ev.loss.toFixed(4)}, val ppl ${ev.ppl.toFixed(3)}`,
            );
          }
          lastLogAt = performance.now(); // evaluation time is not training throughput
        }
        await log.log(record as unknown as Record<string, never>);
        opts.onLog?.(record);
        progress?.update(i, { tokensPerSec: tps, loss: lastLoss }, true);
      } else {
        progress?.update(i, { loss: lastLoss });
      }
      // A stop requested while this step was being logged or evaluated (Ctrl-C, or a caller's
      // onLog) ends the run here: the step is logged, and the checkpoint below holds it.
      stopReason = stop.reason;
      if (stopReason) {
        stopPhase ||= "while logging";
        break;
      }
      if (o.checkpointEvery > 0 && i % o.checkpointEvery === 0 && i < o.steps) {
        await checkpoint(i);
        await yieldToEventLoop();
        if (stop.reason) {
          stopReason = stop.reason;
          stopPhase = "while writing a checkpoint";
          break;
        }
      }
    }
  } finally {
    progress?.done();
  }
  if (done > startStep || !(await checkpointExists(paths.checkpoint))) await checkpoint(done);
  if (stopReason) {
    say(`${stopReason} ${stopPhase} after step ${done}: checkpoint written to ${paths.checkpoint}`);
  }

  // Final evaluation over the whole validation split. Interrupted runs evaluate on a sample of
  // it, and a Ctrl-C during the evaluation ends it after the batch in flight.
  await yieldToEventLoop();
  const ev = await evaluateAll(
    data,
    state.params,
    config,
    state.layers,
    B,
    S,
    stopReason || stop.reason ? o.evalBatches : o.finalEvalBatches,
    () => stop.reason !== null,
  );
  if (!stopReason && stop.reason) {
    stopReason = stop.reason;
    say(
      `${stopReason} during the final evaluation: it covers ${
        ev.byDomain.length > 1 ? "the batches done per domain" : "the batches done"
      }`,
    );
  }
  const valByDomain = ev.byDomain.map((d, i) => ({
    name: d.name,
    loss: d.loss,
    ppl: d.ppl,
    tokens: d.tokens,
    unigramPpl: unigramPerplexity(
      data.vals[i].trainTokens,
      data.vals[i].set.tokens,
      data.tokenizer.vocabSize,
    ),
  }));
  const unigramPpl = Math.exp(
    valByDomain.reduce((a, d) => a + Math.log(d.unigramPpl), 0) / valByDomain.length,
  );
  if (done > startStep) {
    await log.log({
      step: done,
      val_loss: ev.loss,
      val_ppl: ev.ppl,
      ...(valByDomain.length > 1
        ? { val_ppl_by_domain: Object.fromEntries(valByDomain.map((d) => [d.name, d.ppl])) }
        : {}),
      final: true,
    } as unknown as Record<string, never>);
  }
  const balance: LayerBalance[] = ev.counts.map((c, l) => ({
    layer: l,
    maxVioGlobal: maxVio(c),
    tokensPerExpert: c.map((x) => Math.round(x)),
    maxVioLastStep: lastMetrics?.layers[l]?.max_vio ?? NaN,
  }));
  paths.plots = await writeReportPlots(out, await readMetrics(paths.metrics), config);

  const samples: { prompt: string; text: string }[] = [];
  if (o.samples > 0 && !stopReason) {
    const promptLen = Math.min(48, S - 1);
    for (let s = 0; s < o.samples && !stop.reason; s++) {
      // Prompts from the validation split(s), round-robin over domains.
      const val = data.vals[s % data.vals.length].set;
      const at = Math.floor(((s + 0.5) / o.samples) * Math.max(1, val.length - promptLen));
      const prompt = Array.from(val.tokens.subarray(at, at + promptLen));
      const ids = await generate(state.params, config, prompt, {
        maxNewTokens: o.sampleTokens,
        seed: o.seed + s,
        state: state.layers,
        signal: stop.signal,
      });
      samples.push({ prompt: data.tokenizer.decode(prompt), text: data.tokenizer.decode(ids) });
    }
    paths.samples = join(out, "samples.txt");
    await writeFileAtomic(
      paths.samples,
      samples.map((x) => `--- prompt\n${x.prompt}\n--- continuation\n${x.text}\n`).join("\n"),
    );
  }
  const seconds = (performance.now() - started) / 1000;
  const result: TrainResult = {
    config,
    params: state.params,
    layers: state.layers,
    step: done,
    schedule,
    interrupted: stopReason !== null,
    valLoss: ev.loss,
    valPpl: ev.ppl,
    unigramPpl,
    valByDomain,
    balance,
    tokensPerSec: trainSeconds > 0 ? tokensSeen / trainSeconds : 0,
    seconds,
    paths,
    samples,
    tokenizer: data.tokenizer,
    backend,
  };
  await writeFileAtomic(
    join(out, "summary.json"),
    JSON.stringify(
      {
        step: done,
        interrupted: result.interrupted,
        val_loss: ev.loss,
        val_ppl: ev.ppl,
        unigram_ppl: unigramPpl,
        val_by_domain: valByDomain,
        tokens_per_sec: Math.round(result.tokensPerSec),
        seconds: Math.round(seconds * 10) / 10,
        backend,
        balance,
        config,
      },
      null,
      2,
    ) + "\n",
  );
  if (show) say(`done in ${formatDuration(seconds)}`);
  return result;
}
