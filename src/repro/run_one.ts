/**
 * One run of a suite, in this process: prepare its data, build its starting point (fresh, or
 * another run's checkpoint, or an upcycling of several), train with `mj.train.train` into the
 * run's directory — resuming from the run's own checkpoint when an earlier session left one —
 * and write its result. Also a timing probe: a few steps of the same configuration from random
 * parameters, for the suite's time estimate.
 */
import { fail } from "../errors.ts";
import { realize } from "../realize.ts";
import { type ModelConfig, modelConfig, parameterCount } from "../nn/config.ts";
import { initParams, type Params } from "../nn/model.ts";
import { upcycle } from "../nn/upcycle.ts";
import { prepareData, type PreparedData } from "../data/dataset.ts";
import { type PreparedMixture, prepareMixture } from "../data/mixture.ts";
import { checkpointExists, loadCheckpoint } from "../io/checkpoint.ts";
import { readMetrics } from "../io/metrics.ts";
import { modelConfigFromHf } from "../io/hf.ts";
import { train, type TrainOptions } from "../train/trainer.ts";
import { evaluate } from "../train/evaluate.ts";
import { TrainInterrupted } from "../train/interrupt.ts";
import { trainingFlopsPerToken } from "./compute.ts";
import { checkpointDir, readWall, runDir, trainDir, writeResult, writeWall } from "./layout.ts";
import { acquireLock, releaseLock } from "./lock.ts";
import { sourceCommit } from "./machine.ts";
import { nativeInfo } from "../runtime/native/backend.ts";
import { RunInterrupted } from "./interrupted.ts";
import type { CurveRecord, RunResult, RunSpec, StepRecord } from "./suite.ts";

export interface RunOneOptions {
  /** The suite's directory (runs/<id>/ below it). */
  suiteDir: string;
  /** Stops the run after the current step; it checkpoints and can be resumed. */
  signal?: AbortSignal;
  /** Training progress on stderr (default false). */
  progress?: boolean;
  /** The accelerator's description for the result (e.g. the WebGPU adapter), if any. */
  adapter?: string | null;
  /** Called with every logged training record (see `mj.train.train`'s onLog). */
  onLog?: TrainOptions["onLog"];
}

const dataCache = new Map<string, Promise<PreparedData | PreparedMixture>>();

/** The run's corpora, prepared once per process. */
function dataOf(spec: RunSpec): Promise<PreparedData | PreparedMixture> {
  const key = `${spec.train.data}|${spec.train.tokenizer ?? "byte"}`;
  let d = dataCache.get(key);
  if (!d) {
    const names = spec.train.data.split("+").map((s) => s.trim());
    const tokenizer = spec.train.tokenizer ?? "byte";
    d = names.length > 1
      ? prepareMixture(names, { tokenizer })
      : prepareData({ corpus: names[0], tokenizer });
    dataCache.set(key, d);
    d.catch(() => dataCache.delete(key));
  }
  return d;
}

/** A dense model of the given architecture with random parameters (for probes). */
function randomDense(model: Partial<ModelConfig>, vocabSize: number, seq: number, seed: number) {
  const config = modelConfig({ ...model, vocabSize, maxSeqLen: seq });
  return { config, params: initParams(config, seed) };
}

/** Where a run starts when it has `init`: the runs it names, or random stand-ins for a probe. */
async function initOf(
  spec: RunSpec,
  suiteDir: string,
  vocabSize: number,
  random: boolean,
): Promise<NonNullable<TrainOptions["init"]>> {
  const init = spec.init!;
  const load = async (id: string) => {
    const dir = checkpointDir(suiteDir, id);
    if (!(await checkpointExists(dir))) {
      fail("reproduce", `run ${spec.id} starts from run ${id}, which has no checkpoint at ${dir}`);
    }
    const ck = await loadCheckpoint<Params>(dir);
    return { config: ck.config, params: ck.params };
  };
  const source = (id: string, i: number) =>
    random
      ? Promise.resolve(randomDense(init.model, vocabSize, spec.train.seq, spec.seed + i))
      : load(id);
  if (init.kind === "continue") {
    const s = await source(init.from, 0);
    return { config: s.config, params: await realize(s.params) };
  }
  const seed = await source(init.seed, 0);
  const experts = [];
  for (const [i, id] of init.experts.entries()) experts.push(await source(id, i + 1));
  const up = upcycle(seed, experts, {
    method: init.method,
    ...(init.attention ? { attention: init.attention } : {}),
    ...(init.topK ? { topK: init.topK } : {}),
    seed: spec.seed,
  });
  return { config: up.config, params: await realize(up.params) };
}

function median(xs: number[]): number {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/**
 * Median seconds per step from the metrics log: each record covers the steps since the one
 * before at its `tokens_per_sec`; the first record of every session (compilation) is left out.
 */
function stepSeconds(records: Record<string, unknown>[], tokensPerStep: number): number {
  const times: number[] = [];
  let lastElapsed = Infinity;
  for (const r of records) {
    if (typeof r.tokens_per_sec !== "number" || typeof r.elapsed_s !== "number") continue;
    const first = r.elapsed_s < lastElapsed;
    lastElapsed = r.elapsed_s;
    if (!first && r.tokens_per_sec > 0) times.push(tokensPerStep / r.tokens_per_sec);
  }
  return median(times);
}

/**
 * Runs one spec to the end and writes its result.json; resumes from the run's own checkpoint
 * when there is one. Throws RunInterrupted when stopped by the signal.
 *
 * @example
 * ```ts
 * const r = await runOne(spec, { suiteDir: "reports/grin" }); // r.ppl, r.curve, …
 * ```
 */
export async function runOne(spec: RunSpec, o: RunOneOptions): Promise<RunResult> {
  // A child left over from a killed runner may still be training this run: never run it twice.
  const lock = `${runDir(o.suiteDir, spec.id)}/.lock`;
  await acquireLock(lock, `run ${spec.id}`);
  try {
    return await runLocked(spec, o);
  } finally {
    await releaseLock(lock);
  }
}

async function runLocked(spec: RunSpec, o: RunOneOptions): Promise<RunResult> {
  const started = performance.now();
  const load0 = Deno.loadavg()[0];
  const out = trainDir(o.suiteDir, spec.id), ckpt = checkpointDir(o.suiteDir, spec.id);
  // A crash while a checkpoint was being swapped in leaves the previous one as `.old`.
  const resumeFrom = (await checkpointExists(ckpt))
    ? ckpt
    : (await checkpointExists(`${ckpt}.old`))
    ? `${ckpt}.old`
    : null;
  const resume = resumeFrom !== null;
  const data = await dataOf(spec);
  const t = spec.train;
  const init = !resume && spec.init
    ? await initOf(spec, o.suiteDir, data.tokenizer.vocabSize, false)
    : undefined;
  // A resumed run names its model: the spec's, or (a run that started from other runs'
  // parameters) the checkpoint's own, so that the trainer checks it against the checkpoint.
  const model = resume
    ? spec.init
      ? modelConfigFromHf(JSON.parse(await Deno.readTextFile(`${resumeFrom}/config.json`)))
      : t.model
    : spec.init
    ? undefined
    : t.model;
  const wall = await readWall(o.suiteDir, spec.id);
  const saveWall = () =>
    writeWall(o.suiteDir, spec.id, {
      seconds: wall.seconds + (performance.now() - started) / 1000,
      sessions: wall.sessions + 1,
    });
  let r;
  try {
    r = await train({
      ...(model ? { model } : {}),
      ...(resume ? { resume: ckpt } : {}),
      ...(init ? { init } : {}),
      data,
      steps: t.steps,
      batch: t.batch,
      seq: t.seq,
      // A resumed run keeps its checkpoint's schedule (the same spec made it).
      ...(resume ? {} : { lr: t.lr }),
      seed: spec.seed,
      evalEvery: t.evalEvery,
      evalBatches: t.evalBatches,
      finalEvalBatches: t.evalBatches,
      logEvery: t.logEvery,
      checkpointEvery: t.checkpointEvery,
      samples: 0,
      out,
      progress: o.progress ?? false,
      handleInterrupt: false,
      ...(o.signal ? { signal: o.signal } : {}),
      ...(o.onLog ? { onLog: o.onLog } : {}),
    });
  } catch (e) {
    // Stopped before its first step: nothing was written, the next session starts it again.
    if (e instanceof TrainInterrupted) {
      await saveWall();
      throw new RunInterrupted(spec.id);
    }
    throw e;
  }
  const session = (performance.now() - started) / 1000;
  await saveWall();
  if (r.interrupted) throw new RunInterrupted(spec.id, r.step);

  const records = await readMetrics(r.paths.metrics);
  const tokensPerStep = t.batch * t.seq;
  const multi = r.valByDomain.length > 1;
  const curve: CurveRecord[] = records
    .filter((x) => typeof x.val_ppl === "number" && !x.final && (x.step as number) < r.step)
    .map((x) => ({
      step: x.step as number,
      tokens: (x.step as number) * tokensPerStep,
      ppl: x.val_ppl as number,
      ...(multi && x.val_ppl_by_domain
        ? { byDomain: x.val_ppl_by_domain as Record<string, number> }
        : {}),
    }));
  const pplByDomain = Object.fromEntries(r.valByDomain.map((d) => [d.name, d.ppl]));
  curve.push({
    step: r.step,
    tokens: r.step * tokensPerStep,
    ppl: r.valPpl,
    ...(multi ? { byDomain: pplByDomain } : {}),
  });
  const steps: StepRecord[] = records.filter((x) => typeof x.loss === "number").map((x) => {
    const mean = x.layers_mean as Record<string, number> | undefined;
    const max = x.layers_max as Record<string, number> | undefined;
    return {
      step: x.step as number,
      loss: x.loss as number,
      ce: x.ce as number,
      ...(mean ? { maxVioMean: mean.max_vio } : {}),
      ...(max ? { maxVioMax: max.max_vio } : {}),
    };
  });
  const global = r.balance.map((b) => b.maxVioGlobal);
  const result: RunResult = {
    id: spec.id,
    spec,
    ppl: r.valPpl,
    pplByDomain,
    curve,
    steps,
    ...(global.length
      ? {
        maxVioGlobal: global.reduce((a, b) => a + b, 0) / global.length,
        maxVioGlobalByLayer: global,
      }
      : {}),
    stepSeconds: stepSeconds(records, tokensPerStep),
    tokens: r.step * tokensPerStep,
    params: parameterCount(r.config),
    flopsPerToken: trainingFlopsPerToken(r.config, t.seq),
    wallSeconds: wall.seconds + session,
    sessions: wall.sessions + 1,
    backend: r.backend,
    adapter: o.adapter ?? null,
    load: [load0, Deno.loadavg()[0]],
  };
  if (r.backend === "native") {
    const info = await nativeInfo();
    if (info) result.native = { threads: info.threads, blas: info.blas };
  }
  const commit = await sourceCommit();
  if (commit) result.commit = commit;
  await writeResult(o.suiteDir, result);
  return result;
}

/** Measured costs of a run's configuration. */
export interface Probe {
  /** Median seconds per training step after the first two. */
  stepSeconds: number;
  /** Seconds of the first step (compilation included). */
  firstStepSeconds: number;
  /** Seconds per validation batch. */
  evalBatchSeconds: number;
  /** Seconds from process start to the first step (module loading, data preparation). */
  startupSeconds: number;
  backend: string;
}

/**
 * Times a few training steps and validation batches of a run's configuration, from random
 * parameters (a run that starts from other runs' checkpoints is probed without them).
 *
 * @example
 * ```ts
 * const p = await probeRun(spec, { suiteDir: "reports/grin", steps: 8 }); // p.stepSeconds
 * ```
 */
export async function probeRun(
  spec: RunSpec,
  o: { suiteDir: string; steps?: number },
): Promise<Probe> {
  const steps = Math.max(4, o.steps ?? 8);
  const data = await dataOf(spec);
  const init = spec.init
    ? await initOf(spec, o.suiteDir, data.tokenizer.vocabSize, true)
    : undefined;
  const tmp = await Deno.makeTempDir({ prefix: "moejit-probe-" });
  try {
    const marks: number[] = [];
    const start = performance.now();
    const t = spec.train;
    const r = await train({
      ...(init ? { init } : { model: t.model }),
      data,
      steps,
      batch: t.batch,
      seq: t.seq,
      lr: t.lr,
      seed: spec.seed,
      evalEvery: 0,
      logEvery: 1,
      checkpointEvery: 0,
      finalEvalBatches: 1,
      samples: 0,
      out: tmp,
      progress: false,
      handleInterrupt: false,
      onLog: () => marks.push(performance.now()),
    });
    const diffs = marks.slice(2).map((m, i) => (m - marks[i + 1]) / 1000);
    const val = "domains" in data ? data.domains[0].val : data.val;
    const ev = () =>
      evaluate(r.params, r.config, val, {
        batch: t.batch,
        seq: t.seq,
        maxBatches: 2,
        layers: r.layers,
      });
    await ev();
    const e0 = performance.now();
    await ev();
    return {
      stepSeconds: median(diffs),
      firstStepSeconds: (marks[0] - start) / 1000,
      evalBatchSeconds: (performance.now() - e0) / 2000,
      startupSeconds: start / 1000,
      backend: r.backend,
    };
  } finally {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
}
