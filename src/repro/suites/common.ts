/**
 * Pieces every suite shares: the corpora, the training options a scale implies, the usual
 * columns (validation perplexity, step time), claim builders (lower perplexity, tokens saved to
 * reach the other arm's final perplexity) and the validation-curve chart.
 */
import type { ModelConfig } from "../../nn/config.ts";
import { firstReach } from "../curve.ts";
import type { Chart, Claim, Column, RunSpec, Scale, TrainSpec } from "../suite.ts";

/** The three corpora moejit ships, trained on as a mixture in equal parts (validated per domain). */
export const CORPORA = "moby-dick+sotu+spam-assassin";

/**
 * The model fields a scale sets (width, depth, heads, expert size).
 *
 * @example
 * ```ts
 * modelOf({ dModel: 128, nLayers: 2, nHeads: 4, dFf: 256 }); // { dModel: 128, … }
 * ```
 */
export function modelOf(s: Scale): Partial<ModelConfig> {
  return { dModel: s.dModel, nLayers: s.nLayers, nHeads: s.nHeads, dFf: s.dFf };
}

/**
 * Training options from a scale: `evalPoints` evaluations spread over `steps`, four periodic
 * checkpoints (what a killed run resumes from).
 *
 * @example
 * ```ts
 * trainOf(scale, { ...modelOf(scale), experts: 8, topK: 1 }, { steps: 300 });
 * ```
 */
export function trainOf(
  s: Scale,
  model: Partial<ModelConfig> | undefined,
  over: Partial<TrainSpec> = {},
): TrainSpec {
  const steps = over.steps ?? s.steps;
  return {
    ...(model ? { model } : {}),
    data: CORPORA,
    steps,
    batch: s.batch,
    seq: s.seq,
    lr: s.lr,
    evalEvery: Math.max(1, Math.floor(steps / s.evalPoints)),
    evalBatches: s.evalBatches,
    logEvery: s.logEvery ?? 10,
    checkpointEvery: Math.max(1, Math.ceil(steps / 4)),
    ...over,
  };
}

/**
 * One run per (group, arm, seed), in seed-major order (every arm of seed 0 first, so that a
 * stopped suite has whole seeds to report).
 *
 * @example
 * ```ts
 * gridRuns([0, 1], [{ group: "8c1", arm: "topk", train }]); // ids 8c1/topk/seed-0, …/seed-1
 * ```
 */
export function gridRuns(
  seeds: readonly number[],
  cells: { group: string; arm: string; train: TrainSpec }[],
): RunSpec[] {
  return seeds.flatMap((seed) =>
    cells.map((c) => ({
      id: `${c.group}/${c.arm}/seed-${seed}`,
      group: c.group,
      arm: c.arm,
      seed,
      train: c.train,
    }))
  );
}

export const PPL_COLUMN: Column = {
  key: "ppl",
  label: "val ppl",
  value: (r) => r.ppl,
  digits: 3,
};

export const STEP_TIME_COLUMN: Column = {
  key: "step_s",
  label: "s/step",
  value: (r) => r.stepSeconds,
  digits: 3,
};

/**
 * A fraction as a signed percentage.
 *
 * @example
 * ```ts
 * percent(0.091); // "+9.1 %"
 * ```
 */
export const percent = (v: number) => `${v >= 0 ? "+" : ""}${(100 * v).toFixed(1)} %`;

/**
 * A formatter of signed numbers with `digits` decimals.
 *
 * @example
 * ```ts
 * signed(3)(-0.12); // "-0.120"
 * ```
 */
export const signed = (digits: number) => (v: number) => `${v >= 0 ? "+" : ""}${v.toFixed(digits)}`;

/**
 * "b has a lower final validation perplexity than a" (on one domain, or the mean over domains):
 * ppl(b) − ppl(a) < 0, seed by seed.
 *
 * @example
 * ```ts
 * lowerPpl("8c1", { key: "topk", label: "TopK" }, { key: "default", label: "Default MoE" },
 *   "Default MoE beats TopK", "Fig. 2");
 * ```
 */
export function lowerPpl(
  group: string,
  a: { key: string; label: string },
  b: { key: string; label: string },
  paper: string,
  source: string,
  domain?: string,
): Claim {
  const ppl = (r: { ppl: number; pplByDomain: Record<string, number> }) =>
    domain ? r.pplByDomain[domain] ?? NaN : r.ppl;
  return {
    group,
    paper,
    source,
    measured: `val ppl${domain ? ` on ${domain}` : ""}: ${b.label} − ${a.label}`,
    a: a.key,
    b: b.key,
    value: (ra, rb) => ppl(rb) - ppl(ra),
    expect: "negative",
    format: signed(3),
  };
}

/**
 * "b needs fewer tokens than a to reach a's final perplexity": 1 − tokens_b / tokens_a, where
 * tokens_b is read off b's validation curve (linear between evaluations); null when b never
 * reaches it.
 *
 * @example
 * ```ts
 * tokensSaved("8c1", topk, dflt, "Default MoE needs 9 % fewer tokens", "Fig. 11");
 * ```
 */
export function tokensSaved(
  group: string,
  a: { key: string; label: string },
  b: { key: string; label: string },
  paper: string,
  source: string,
): Claim {
  return {
    group,
    paper,
    source,
    measured:
      `tokens ${b.label} needs to reach ${a.label}'s final val ppl, saved (1 − tokens / ${a.label}'s tokens)`,
    a: a.key,
    b: b.key,
    value: (ra, rb) => {
      const reach = firstReach(rb.curve.map((p) => ({ x: p.tokens, y: p.ppl })), ra.ppl);
      return reach === null ? null : 1 - reach / ra.tokens;
    },
    expect: "positive",
    format: percent,
  };
}

/**
 * Validation perplexity against tokens (overall, or one domain's), one line per arm of `group`.
 *
 * @example
 * ```ts
 * pplChart("8c1", "8 experts, top-1", "val_ppl_8c1.svg");
 * ```
 */
export function pplChart(group: string, label: string, file: string, domain?: string): Chart {
  return {
    file,
    title: `Validation perplexity${domain ? ` (${domain})` : ""}, ${label}`,
    group,
    xLabel: "tokens",
    yLabel: "validation perplexity (bytes)",
    logY: true,
    series: (r) =>
      r.curve.map((p) => ({ x: p.tokens, y: domain ? p.byDomain?.[domain] ?? NaN : p.ppl })),
  };
}

/**
 * Each arm's validation perplexity minus `baseline`'s, seed by seed, against tokens: the paired
 * comparison the claims test, with its spread over seeds.
 *
 * @example
 * ```ts
 * pplDifferenceChart("8c1", "8 experts, top-1", { key: "topk", label: "TopK" }, "diff_8c1.svg");
 * ```
 */
export function pplDifferenceChart(
  group: string,
  label: string,
  baseline: { key: string; label: string },
  file: string,
): Chart {
  return {
    file,
    title: `Val ppl − ${baseline.label}'s (same seed), ${label}`,
    group,
    xLabel: "tokens",
    yLabel: `val ppl − ${baseline.label} (below 0: better)`,
    baseline: baseline.key,
    series: (r) => r.curve.map((p) => ({ x: p.tokens, y: p.ppl })),
  };
}
