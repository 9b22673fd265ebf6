/**
 * Runs a suite's training runs in order, resumably: a run whose result.json exists is never run
 * again (its result is read back), a run that needs another run's checkpoint waits for it, a run
 * that fails is reported and the others go on, and a stop request (Ctrl-C) ends the suite after
 * the current run has checkpointed. One progress line when a run starts and one when it ends,
 * with the suite's ETA.
 */
import { fail } from "../errors.ts";
import { formatDuration } from "../train/progress.ts";
import { canonicalJson, checkpointDir, readResult, readSpec, runDir, writeSpec } from "./layout.ts";
import { RunInterrupted } from "./interrupted.ts";
import { acquireLock, releaseLock } from "./lock.ts";
import { needsOf, type RunResult, type RunSpec } from "./suite.ts";

/** Runs one spec to the end (writing its result.json), or throws (RunInterrupted when stopped). */
export interface Executor {
  run(
    spec: RunSpec,
    ctx: { suiteDir: string; signal: AbortSignal; hardSignal: AbortSignal },
  ): Promise<void>;
}

export interface RunSuiteOptions {
  suiteDir: string;
  specs: readonly RunSpec[];
  executor: Executor;
  /** Estimated seconds of a run, for the ETA (default: learnt from the runs finished so far). */
  estimate?: (spec: RunSpec) => number | undefined;
  /** Progress lines (default: stderr). */
  log?: (line: string) => void;
  /** Stop after the current run (it checkpoints). */
  signal?: AbortSignal;
  /** Kill the current run at once. */
  hardSignal?: AbortSignal;
  /** Keep the checkpoints of finished runs (default: deleted once no other run needs them). */
  keepCheckpoints?: boolean;
}

export interface SuiteOutcome {
  /** Every finished run, this session's and earlier ones', in spec order. */
  results: RunResult[];
  /** Runs that failed (or could not start because a run they need failed). */
  failed: { id: string; error: string }[];
  /** Runs finished in an earlier session. */
  reused: string[];
  /** Runs finished in this session. */
  ran: string[];
  /** True when a stop request ended the suite early. */
  interrupted: boolean;
  /** Wall seconds of this session. */
  seconds: number;
}

/** The first path at which two JSON values differ, e.g. "train.steps: 600 vs 300". */
function firstDifference(a: unknown, b: unknown, path = ""): string {
  if (canonicalJson(a) === canonicalJson(b)) return "";
  if (a && b && typeof a === "object" && typeof b === "object") {
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    for (const k of [...keys].sort()) {
      const d = firstDifference(
        (a as Record<string, unknown>)[k],
        (b as Record<string, unknown>)[k],
        path ? `${path}.${k}` : k,
      );
      if (d) return d;
    }
  }
  return `${path || "(the whole spec)"}: ${JSON.stringify(a)} then, ${JSON.stringify(b)} now`;
}

function checkSpecs(specs: readonly RunSpec[]): void {
  const seen = new Set<string>();
  for (const s of specs) {
    if (seen.has(s.id)) fail("reproduce", `two runs have the id ${JSON.stringify(s.id)}`);
    for (const n of needsOf(s)) {
      if (!seen.has(n)) {
        fail("reproduce", `run ${s.id} needs run ${n}, which does not come before it`);
      }
    }
    seen.add(s.id);
  }
}

/**
 * Runs every spec that has not finished yet.
 *
 * @example
 * ```ts
 * const out = await runSuite({ suiteDir: "reports/grin", specs, executor: subprocessExecutor(argv) });
 * console.log(out.results.length, out.failed);
 * ```
 */
export async function runSuite(o: RunSuiteOptions): Promise<SuiteOutcome> {
  checkSpecs(o.specs);
  const lock = `${o.suiteDir}/.lock`;
  await acquireLock(lock, `a suite runner in ${o.suiteDir}`);
  try {
    return await runLocked(o);
  } finally {
    await releaseLock(lock);
  }
}

async function runLocked(o: RunSuiteOptions): Promise<SuiteOutcome> {
  const started = performance.now();
  const log = o.log ?? ((line: string) => console.error(line));
  const results = new Map<string, RunResult>();
  const reused: string[] = [];
  for (const spec of o.specs) {
    const r = await readResult(o.suiteDir, spec.id);
    if (!r) continue;
    const diff = firstDifference(r.spec, spec);
    if (diff) {
      fail(
        "reproduce",
        `run ${spec.id} in ${
          runDir(o.suiteDir, spec.id)
        } finished with another configuration (${diff}); delete that directory or choose another --out`,
      );
    }
    results.set(spec.id, r);
    reused.push(spec.id);
  }
  const todo = o.specs.filter((s) => !results.has(s.id));
  log(
    `${o.specs.length} runs: ${reused.length} finished earlier, ${todo.length} to run`,
  );

  const hard = o.hardSignal ?? new AbortController().signal;
  const stop = o.signal ?? new AbortController().signal;
  const failed: { id: string; error: string }[] = [];
  const ran: string[] = [];
  let interrupted = false;
  let spent = 0, estimatedSpent = 0, stepsSpent = 0;
  const estimateOf = (s: RunSpec) => o.estimate?.(s);
  const eta = (rest: RunSpec[]): string => {
    if (!rest.length) return "done";
    const est = rest.map(estimateOf);
    let secs: number;
    if (est.every((e) => e !== undefined) && (estimatedSpent > 0 || !ran.length)) {
      const factor = estimatedSpent > 0 ? spent / estimatedSpent : 1;
      secs = factor * est.reduce((a: number, b) => a + b!, 0);
    } else if (stepsSpent > 0) {
      secs = (spent / stepsSpent) * rest.reduce((a, s) => a + s.train.steps, 0);
    } else return "unknown yet";
    return `${formatDuration(secs)} for ${rest.length} run${rest.length > 1 ? "s" : ""}`;
  };

  const removeUnneededCheckpoints = async () => {
    if (o.keepCheckpoints) return;
    const stillNeeded = new Set(
      o.specs.filter((s) => !results.has(s.id)).flatMap((s) => needsOf(s)),
    );
    for (const id of results.keys()) {
      if (stillNeeded.has(id)) continue;
      const dir = checkpointDir(o.suiteDir, id);
      for (const d of [dir, `${dir}.old`, `${dir}.partial`]) {
        await Deno.remove(d, { recursive: true }).catch(() => {});
      }
    }
  };
  await removeUnneededCheckpoints();

  for (let i = 0; i < todo.length; i++) {
    const spec = todo[i];
    const tag = `[${reused.length + i + 1}/${o.specs.length}] ${spec.id}`;
    if (stop.aborted) {
      interrupted = true;
      break;
    }
    const missing = needsOf(spec).filter((n) => !results.has(n));
    if (missing.length) {
      const error = `needs run ${missing.join(", ")}, which did not finish`;
      failed.push({ id: spec.id, error });
      log(`${tag}: skipped, ${error}`);
      continue;
    }
    const previous = await readSpec(o.suiteDir, spec.id);
    if (previous && firstDifference(previous, spec)) {
      log(
        `${tag}: its unfinished run had another configuration (${
          firstDifference(previous, spec)
        }); starting it afresh`,
      );
      await Deno.remove(runDir(o.suiteDir, spec.id), { recursive: true });
    }
    await writeSpec(o.suiteDir, spec);
    const est = estimateOf(spec);
    log(`${tag}: running${est !== undefined ? ` (about ${formatDuration(est)})` : ""}`);
    const t0 = performance.now();
    try {
      await o.executor.run(spec, { suiteDir: o.suiteDir, signal: stop, hardSignal: hard });
      const r = await readResult(o.suiteDir, spec.id);
      if (!r) fail("reproduce", `run ${spec.id} ended without writing its result.json`);
      const secs = (performance.now() - t0) / 1000;
      results.set(spec.id, r);
      ran.push(spec.id);
      spent += secs;
      stepsSpent += spec.train.steps;
      if (est !== undefined) estimatedSpent += est;
      log(
        `${tag}: done in ${formatDuration(secs)}: val ppl ${r.ppl.toFixed(3)}, ${
          r.stepSeconds.toFixed(3)
        } s/step; suite ETA ${eta(todo.slice(i + 1))}`,
      );
      await removeUnneededCheckpoints();
    } catch (e) {
      if (e instanceof RunInterrupted || stop.aborted) {
        interrupted = true;
        log(`${tag}: stopped; run the same command again to resume`);
        break;
      }
      const error = (e as Error).message;
      failed.push({ id: spec.id, error });
      log(`${tag}: FAILED: ${error}`);
    }
  }
  return {
    results: o.specs.map((s) => results.get(s.id)).filter((r): r is RunResult => !!r),
    failed,
    reused,
    ran,
    interrupted,
    seconds: (performance.now() - started) / 1000,
  };
}
