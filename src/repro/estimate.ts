/**
 * The time a suite will take, from measured step times: every distinct configuration among the
 * runs still to do is probed once (a few steps in a child process, cached under probes/), and a
 * run's estimate is process start + first step + the remaining steps × the measured step time +
 * its evaluations × the measured time per validation batch.
 */
import { writeFileAtomic } from "../io/files.ts";
import { canonicalJson } from "./layout.ts";
import type { Probe } from "./run_one.ts";
import type { RunSpec } from "./suite.ts";

/**
 * What decides a run's cost: its model (or starting point), batch, sequence, data, logging —
 * runs with equal keys share one timing probe.
 *
 * @example
 * ```ts
 * costKey(specs[0], "auto") === costKey(specs[5], "auto"); // true for two seeds of one arm
 * ```
 */
export function costKey(spec: RunSpec, backend: string): string {
  const t = spec.train;
  const init = spec.init
    ? spec.init.kind === "continue"
      ? { kind: "continue", model: spec.init.model }
      : { ...spec.init, seed: undefined, experts: spec.init.experts.length }
    : null;
  return canonicalJson({
    backend,
    model: t.model ?? null,
    init,
    batch: t.batch,
    seq: t.seq,
    data: t.data,
    logEvery: t.logEvery,
  });
}

async function shortHash(text: string): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(d)].slice(0, 8).map((b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Estimated seconds of a run from a probe of its configuration.
 *
 * @example
 * ```ts
 * runSeconds(spec, { stepSeconds: 0.4, firstStepSeconds: 5, evalBatchSeconds: 0.1, startupSeconds: 6, backend: "webgpu" });
 * ```
 */
export function runSeconds(spec: RunSpec, p: Probe): number {
  const t = spec.train;
  const domains = t.data.split("+").length;
  const evals = Math.floor((t.steps - 1) / Math.max(1, t.evalEvery)) + 1;
  return p.startupSeconds + p.firstStepSeconds + (t.steps - 1) * p.stepSeconds +
    evals * t.evalBatches * domains * p.evalBatchSeconds;
}

export interface SuiteEstimate {
  /** Estimated seconds per run id. */
  seconds: Map<string, number>;
  /** The probe of each configuration, with a run that has it. */
  probes: { example: string; probe: Probe }[];
}

/**
 * Probes every configuration among `specs` (reusing probes cached in `suiteDir/probes/`) and
 * estimates each run.
 *
 * @example
 * ```ts
 * const est = await estimateSuite(todo, { suiteDir, backend: "auto", probe: probeInChild });
 * const total = [...est.seconds.values()].reduce((a, b) => a + b, 0);
 * ```
 */
export async function estimateSuite(
  specs: readonly RunSpec[],
  o: {
    suiteDir: string;
    /** The backend asked for ("auto" when none): part of the cache key. */
    backend: string;
    probe: (spec: RunSpec) => Promise<Probe>;
    log?: (line: string) => void;
  },
): Promise<SuiteEstimate> {
  const byKey = new Map<string, RunSpec[]>();
  for (const s of specs) {
    const k = costKey(s, o.backend);
    byKey.set(k, [...(byKey.get(k) ?? []), s]);
  }
  const seconds = new Map<string, number>();
  const probes: SuiteEstimate["probes"] = [];
  let i = 0;
  for (const [key, group] of byKey) {
    i++;
    const path = `${o.suiteDir}/probes/${await shortHash(key)}.json`;
    let probe: Probe | null = null;
    try {
      const cached = JSON.parse(await Deno.readTextFile(path));
      if (cached.key === key) probe = cached.probe as Probe;
    } catch { /* not probed yet */ }
    if (!probe) {
      o.log?.(`  timing ${group[0].id} (${i}/${byKey.size} configurations)`);
      probe = await o.probe(group[0]);
      await writeFileAtomic(path, JSON.stringify({ key, probe }, null, 2) + "\n");
    }
    probes.push({ example: group[0].id, probe });
    for (const s of group) seconds.set(s.id, runSeconds(s, probe));
  }
  return { seconds, probes };
}
