/**
 * Where a suite keeps its runs on disk, and the atomic reads and writes of a run's files:
 *
 * ```
 * <suite dir>/runs/<run id>/spec.json     what the run is (written before it starts)
 *                           result.json   written once, atomically, when it has finished
 *                           wall.json     wall seconds and sessions so far (a resumed run adds up)
 *                           log.txt       the run's own output (subprocess runs)
 *                           train/        metrics.jsonl, plots, checkpoint/ (while it is needed)
 * <suite dir>/probes/<key>.json           measured step times (the suite's time estimate)
 * ```
 */
import { fail } from "../errors.ts";
import { writeFileAtomic } from "../io/files.ts";
import type { RunResult, RunSpec } from "./suite.ts";

/**
 * A run's directory (its id is a relative path of lowercase names).
 *
 * @example
 * ```ts
 * runDir("reports/grin", "top2/topk/seed-0"); // "reports/grin/runs/top2/topk/seed-0"
 * ```
 */
export function runDir(suiteDir: string, id: string): string {
  if (!/^[a-z0-9][a-z0-9.-]*(\/[a-z0-9][a-z0-9.-]*)*$/.test(id)) {
    fail("reproduce", `run id ${JSON.stringify(id)} is not a relative path of [a-z0-9.-] names`);
  }
  return `${suiteDir}/runs/${id}`;
}

/**
 * Where a run's trainer writes (metrics.jsonl, plots, checkpoint/).
 *
 * @example
 * ```ts
 * trainDir("reports/grin", "top2/topk/seed-0"); // "reports/grin/runs/top2/topk/seed-0/train"
 * ```
 */
export const trainDir = (suiteDir: string, id: string) => `${runDir(suiteDir, id)}/train`;

/**
 * A run's checkpoint: what it resumes from, and what runs starting from it load.
 *
 * @example
 * ```ts
 * await mj.io.checkpointExists(checkpointDir("reports/bam", "bam/seed/seed-0"));
 * ```
 */
export const checkpointDir = (suiteDir: string, id: string) =>
  `${trainDir(suiteDir, id)}/checkpoint`;

/**
 * JSON with object keys sorted, so that equal specs serialise equally.
 *
 * @example
 * ```ts
 * canonicalJson({ b: 1, a: [2, { d: 3, c: 4 }] }); // '{"a":[2,{"c":4,"d":3}],"b":1}'
 * ```
 */
export function canonicalJson(v: unknown): string {
  return JSON.stringify(
    v,
    (_k, x) =>
      x && typeof x === "object" && !Array.isArray(x)
        ? Object.fromEntries(Object.keys(x).sort().map((k) => [k, x[k]]))
        : x,
  );
}

async function readJson<T>(path: string): Promise<T | null> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
  try {
    return JSON.parse(text) as T;
  } catch (e) {
    return fail("reproduce", `${path} is not valid JSON (${(e as Error).message})`);
  }
}

/**
 * The finished run's result, or null when it has not finished.
 *
 * @example
 * ```ts
 * const r = await readResult("reports/grin", "top2/topk/seed-0"); // r?.ppl
 * ```
 */
export function readResult(suiteDir: string, id: string): Promise<RunResult | null> {
  return readJson<RunResult>(`${runDir(suiteDir, id)}/result.json`);
}

/**
 * Writes a finished run's result (atomically: a crash leaves no result, never half of one).
 *
 * @example
 * ```ts
 * await writeResult("reports/grin", result); // reports/grin/runs/<result.id>/result.json
 * ```
 */
export async function writeResult(suiteDir: string, r: RunResult): Promise<void> {
  await writeFileAtomic(`${runDir(suiteDir, r.id)}/result.json`, JSON.stringify(r) + "\n");
}

/**
 * The spec a run was started with (null before its first start).
 *
 * @example
 * ```ts
 * const spec = await readSpec("reports/grin", "top2/topk/seed-0");
 * ```
 */
export function readSpec(suiteDir: string, id: string): Promise<RunSpec | null> {
  return readJson<RunSpec>(`${runDir(suiteDir, id)}/spec.json`);
}

/**
 * Records what a run is, before it starts (atomically).
 *
 * @example
 * ```ts
 * await writeSpec("reports/grin", spec); // reports/grin/runs/<spec.id>/spec.json
 * ```
 */
export async function writeSpec(suiteDir: string, spec: RunSpec): Promise<void> {
  await writeFileAtomic(
    `${runDir(suiteDir, spec.id)}/spec.json`,
    JSON.stringify(spec, null, 2) + "\n",
  );
}

/** Wall seconds and sessions a run has used so far. */
export interface Wall {
  seconds: number;
  sessions: number;
}

/**
 * Wall seconds and sessions a run has used so far ({ 0, 0 } before its first session ends).
 *
 * @example
 * ```ts
 * const { seconds, sessions } = await readWall("reports/grin", "top2/topk/seed-0");
 * ```
 */
export async function readWall(suiteDir: string, id: string): Promise<Wall> {
  return (await readJson<Wall>(`${runDir(suiteDir, id)}/wall.json`)) ?? { seconds: 0, sessions: 0 };
}

/**
 * Records a run's wall seconds and sessions after a session (atomically).
 *
 * @example
 * ```ts
 * await writeWall("reports/grin", id, { seconds: prev.seconds + 42, sessions: prev.sessions + 1 });
 * ```
 */
export async function writeWall(suiteDir: string, id: string, w: Wall): Promise<void> {
  await writeFileAtomic(`${runDir(suiteDir, id)}/wall.json`, JSON.stringify(w) + "\n");
}
