/**
 * Default MoE (Panda et al., "Dense Backpropagation Improves Training for Sparse MoE") in
 * miniature: TopK against Default MoE — the EMA default outputs in the forward pass, the
 * backward-only ablation, the library's plain-TopK evaluation of a forward-mode model, and the
 * two readings of the paper's router-score-weighted ("scored") EMA — at two sparsities (8 experts, top-1 and top-2), with the paper's aux loss (α = 0.01) on
 * every arm and the same learning rate for all.
 */
import type { ModelConfig } from "../../nn/config.ts";
import type { Claim, GroupInfo, Scale, Suite } from "../suite.ts";
import {
  gridRuns,
  lowerPpl,
  modelOf,
  percent,
  PPL_COLUMN,
  pplChart,
  pplDifferenceChart,
  STEP_TIME_COLUMN,
  tokensSaved,
  trainOf,
} from "./common.ts";

const ARMS = [
  { key: "topk", label: "TopK" },
  { key: "default", label: "Default MoE" },
  { key: "default-topk-eval", label: "Default MoE, evaluated as plain TopK" },
  { key: "default-bwd", label: "Default MoE (backward only)" },
  { key: "default-scored-mean", label: "Default MoE (scored EMA, mean of π·E)" },
  { key: "default-scored-weighted", label: "Default MoE (scored EMA, Σπ·E / Σπ)" },
] as const;

const MODEL: Record<(typeof ARMS)[number]["key"], Partial<ModelConfig>> = {
  "topk": { estimator: "topk" },
  "default": {
    estimator: "default",
    estimatorOptions: { ema: "mean", mode: "forward", evalDefaults: true },
  },
  "default-topk-eval": {
    estimator: "default",
    estimatorOptions: { ema: "mean", mode: "forward", evalDefaults: false },
  },
  "default-bwd": { estimator: "default", estimatorOptions: { ema: "mean", mode: "backwardOnly" } },
  "default-scored-mean": {
    estimator: "default",
    estimatorOptions: { ema: "scoredMean", mode: "forward", evalDefaults: true },
  },
  "default-scored-weighted": {
    estimator: "default",
    estimatorOptions: { ema: "scoredWeighted", mode: "forward", evalDefaults: true },
  },
};

/** The two sparsities: N experts with top-1 and with top-2 (the paper's 8c1 and 8c2). */
const groups = (s: Scale): GroupInfo[] =>
  [1, 2].map((k) => ({
    key: `${s.experts}c${k}`,
    label: `${s.experts} experts, top-${k}`,
    arms: ARMS.map((a) => ({ ...a })),
  }));

const arm = (key: string) => ARMS.find((a) => a.key === key)!;

export const defaultMoeSuite: Suite = {
  name: "default-moe",
  title: "Default MoE vs TopK (dense router gradients from EMA default outputs)",
  summary:
    "Panda et al. train 2B-parameter MoE language models (8 or 32 experts, top-1 to top-4) on " +
    "FineWeb-Edu for 160B tokens and compare TopK routing with Default MoE, which adds " +
    "Σ_{i∉A} π_i ê_i (ê_i an EMA of expert i's outputs) so that the router receives a dense " +
    "gradient. Here: a byte-level MoE LM on Moby Dick, State of the Union addresses and " +
    "SpamAssassin e-mails in equal parts, 8 experts at top-1 and top-2, every arm with the same " +
    "seeds, learning rate and aux loss.",
  scale: {
    dModel: 128,
    nLayers: 2,
    nHeads: 4,
    dFf: 256,
    experts: 8,
    steps: 600,
    batch: 16,
    seq: 128,
    lr: 3e-3,
    evalPoints: 12,
    evalBatches: 16,
    beta: 0.9,
    auxAlpha: 0.01,
  },
  quick: {
    dModel: 32,
    nLayers: 1,
    nHeads: 2,
    dFf: 32,
    experts: 4,
    steps: 12,
    batch: 4,
    seq: 32,
    lr: 3e-3,
    evalPoints: 3,
    evalBatches: 2,
    beta: 0.9,
    auxAlpha: 0.01,
  },
  scaleDoc: {
    dModel: "model width",
    nLayers: "layers (every FFN is an MoE)",
    nHeads: "attention heads",
    dFf: "expert hidden size (SwiGLU)",
    experts: "experts per layer",
    steps: "training steps of every run",
    batch: "sequences per batch",
    seq: "tokens (bytes) per sequence",
    lr: "peak learning rate (warmup, then cosine to lr/10), the same for every arm",
    evalPoints: "validation evaluations per run (the curve the token savings are read from)",
    evalBatches: "validation batches per evaluation and domain",
    beta: "EMA decay β (the paper's value for 8c1 and 8c2)",
    auxAlpha: "aux loss coefficient α on every arm (the paper's 0.01, global)",
  },
  groups,
  runs: (s, seeds) =>
    gridRuns(
      seeds,
      groups(s).flatMap((g, gi) =>
        g.arms.map((a) => {
          const m = MODEL[a.key as keyof typeof MODEL];
          return {
            group: g.key,
            arm: a.key,
            train: trainOf(s, {
              ...modelOf(s),
              experts: s.experts,
              topK: gi + 1,
              balance: [{ kind: "auxLoss", alpha: s.auxAlpha }],
              ...m,
              ...(m.estimatorOptions
                ? { estimatorOptions: { ...m.estimatorOptions, beta: s.beta } }
                : {}),
            }),
          };
        })
      ),
    ),
  columns: [PPL_COLUMN, STEP_TIME_COLUMN],
  claims: (s) =>
    groups(s).flatMap((g): Claim[] => {
      const topk = arm("topk"), dflt = arm("default");
      return [
        ...(["default", "default-scored-mean", "default-scored-weighted"] as const).map((b) =>
          lowerPpl(
            g.key,
            topk,
            arm(b),
            "Default MoE outperforms TopK at every sparsity tried (8c1 … 32c4)",
            "Fig. 2, §4.2",
          )
        ),
        ...(["default", "default-scored-mean", "default-scored-weighted"] as const).map((b) =>
          tokensSaved(
            g.key,
            topk,
            arm(b),
            "Default MoE reaches TopK's final perplexity with 9 % fewer tokens (8c1, FineWeb-Edu)",
            "Fig. 11, §4.2",
          )
        ),
        lowerPpl(
          g.key,
          arm("default-bwd"),
          dflt,
          "Passing the default vector forward beats applying it in the backward pass only",
          "App. A.4, Fig. 10",
        ),
        {
          group: g.key,
          paper: "Default MoE's overhead is under 2 % of throughput",
          source: "§4.6, Table 3",
          measured: "step time: Default MoE / TopK − 1 (a shared machine: timings are noisy)",
          a: "topk",
          b: "default",
          value: (a, b) => b.stepSeconds / a.stepSeconds - 1,
          expect: "negative",
          threshold: 0.02,
          format: percent,
        },
      ];
    }),
  charts: (s) =>
    groups(s).flatMap((g) => [
      pplChart(g.key, g.label, `val_ppl_${g.key}.svg`),
      pplDifferenceChart(g.key, g.label, arm("topk"), `val_ppl_vs_topk_${g.key}.svg`),
    ]),
  notes: (s) => [
    `Every arm trains with the aux loss (α = ${s.auxAlpha}, global), as in the paper; gates are the selected softmax probabilities, not renormalised.`,
    "The paper's 'scored' EMA weights each expert output by its router probability before it enters the EMA; the normalisation is not stated, so both readings run: the mean of π·E(x) over the expert's tokens, and Σπ·E(x) / Σπ.",
    "An expert that received no token in a batch keeps its EMA vector (the paper does not say).",
    "The paper does not say how a Default MoE model is evaluated. Every arm that passes the defaults forward is evaluated with them (`evalDefaults: true`): the model is evaluated as it was trained. The arm 'evaluated as plain TopK' trains exactly like 'Default MoE' but drops the defaults at evaluation — the library's default (`evalDefaults: false`, after the authors' development code), measured here because a small, young router leaves much of the probability mass on unselected experts.",
    `β = ${s.beta} for both sparsities, the paper's value for 8c1 and 8c2. β-insensitivity of the scored EMA (Fig. 8) is not swept.`,
    "Token savings are read off validation curves evaluated at a fixed number of points, interpolating linearly between evaluations; 'never' means the arm did not reach the other's final perplexity within the run.",
  ],
};
