/** Fabricated runs for the harness's fast tests: results with known numbers, no training. */
import type { RunResult, RunSpec } from "../../src/repro/suite.ts";

/** A spec of the shape suites make (the training options are never used by a fake executor). */
export function fakeSpec(
  group: string,
  arm: string,
  seed: number,
  extra: Partial<RunSpec> = {},
): RunSpec {
  return {
    id: `${group}/${arm}/seed-${seed}`,
    group,
    arm,
    seed,
    train: {
      data: "moby-dick",
      steps: 100,
      batch: 4,
      seq: 32,
      lr: 3e-3,
      evalEvery: 25,
      evalBatches: 2,
      logEvery: 1,
      checkpointEvery: 25,
      model: { dModel: 32 },
    },
    ...extra,
  };
}

/**
 * A result whose validation curve falls linearly in perplexity from ppl + 4 to `ppl` over four
 * evaluations, with per-step MaxVio `vio(step)` (mean and max over layers alike).
 */
export function fakeResult(
  spec: RunSpec,
  ppl: number,
  o: { vio?: (step: number) => number; stepSeconds?: number; byDomain?: Record<string, number> } =
    {},
): RunResult {
  const tokensPerStep = spec.train.batch * spec.train.seq;
  const steps = spec.train.steps;
  const curve = [1, 2, 3, 4].map((i) => ({
    step: (steps * i) / 4,
    tokens: (steps * i / 4) * tokensPerStep,
    ppl: ppl + 4 - i,
    ...(o.byDomain ? { byDomain: o.byDomain } : {}),
  }));
  curve[3].ppl = ppl;
  const vio = o.vio ?? (() => 0.5);
  return {
    id: spec.id,
    spec,
    ppl,
    pplByDomain: o.byDomain ?? { [spec.train.data]: ppl },
    curve,
    steps: Array.from({ length: steps }, (_, i) => ({
      step: i + 1,
      loss: 2,
      ce: 2,
      maxVioMean: vio(i + 1),
      maxVioMax: vio(i + 1),
    })),
    maxVioGlobal: vio(steps),
    maxVioGlobalByLayer: [vio(steps)],
    stepSeconds: o.stepSeconds ?? 0.5,
    tokens: steps * tokensPerStep,
    params: { total: 1e6, active: 5e5 },
    flopsPerToken: 3e6,
    wallSeconds: 60,
    sessions: 1,
    backend: "cpu",
    adapter: null,
    load: [0.5, 0.7],
  };
}
