/**
 * GRIN (Liu et al.) in miniature: SparseMixer-v2 against GShard-style TopK, top-2, each with the
 * global load-balancing loss; and SparseMixer-v1 against TopK at top-1 (v1 is a top-1 estimator:
 * the released code and moejit's implementation route one expert per token).
 */
import type { ModelConfig } from "../../nn/config.ts";
import type { Claim, GroupInfo, Scale, Suite } from "../suite.ts";
import {
  gridRuns,
  lowerPpl,
  modelOf,
  PPL_COLUMN,
  pplChart,
  pplDifferenceChart,
  signed,
  STEP_TIME_COLUMN,
  tokensSaved,
  trainOf,
} from "./common.ts";

const TOP2 = [
  { key: "topk", label: "TopK (GShard, renormalised)" },
  { key: "sparsemixer-v2", label: "SparseMixer-v2" },
];
const TOP1 = [
  { key: "topk", label: "TopK (Switch)" },
  { key: "sparsemixer-v1", label: "SparseMixer-v1" },
];

const groups = (s: Scale): GroupInfo[] => [
  { key: "top2", label: `${s.experts} experts, top-2`, arms: TOP2.map((a) => ({ ...a })) },
  { key: "top1", label: `${s.experts} experts, top-1`, arms: TOP1.map((a) => ({ ...a })) },
];

function modelFor(group: string, arm: string, s: Scale): Partial<ModelConfig> {
  const base = {
    ...modelOf(s),
    experts: s.experts,
    balance: [{ kind: "auxLoss" as const, alpha: s.auxAlpha, score: "softmax" as const }],
  };
  if (group === "top2") {
    return arm === "topk"
      ? { ...base, topK: 2, estimator: "topk", normalizeTopK: true }
      : { ...base, topK: 2, estimator: "sparsemixer", jitterEps: s.jitterEpsV2 };
  }
  return arm === "topk"
    ? { ...base, topK: 1, estimator: "topk" }
    : { ...base, topK: 1, estimator: "sparsemixer-v1", jitterEps: s.jitterEpsV1 };
}

export const grinSuite: Suite = {
  name: "grin",
  title: "GRIN: SparseMixer-v2 vs TopK (top-2), SparseMixer-v1 vs TopK (top-1)",
  summary:
    "GRIN trains a 16×3.8B MoE (top-2 of 16) with SparseMixer-v2, which samples the experts " +
    "from a masked softmax and gives the router a gradient estimate through the sampled expert; " +
    "its 16×0.9B control run with GShard top-2 routing leads for the first ~0.5T tokens, then " +
    "SparseMixer-v2 overtakes. The Default MoE paper, on the other hand, found SparseMixer " +
    "(8 experts, top-2) worse than TopK. Here: a byte-level MoE LM on the three corpora, the " +
    "same seeds, learning rate and global aux loss for every arm.",
  scale: {
    dModel: 128,
    nLayers: 2,
    nHeads: 4,
    dFf: 128,
    experts: 16,
    steps: 600,
    batch: 16,
    seq: 128,
    lr: 3e-3,
    evalPoints: 12,
    evalBatches: 16,
    auxAlpha: 0.01,
    jitterEpsV2: 0.01,
    jitterEpsV1: 0.1,
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
    auxAlpha: 0.01,
    jitterEpsV2: 0.01,
    jitterEpsV1: 0.1,
  },
  scaleDoc: {
    dModel: "model width",
    nLayers: "layers (every FFN is an MoE)",
    nHeads: "attention heads",
    dFf: "expert hidden size (SwiGLU)",
    experts: "experts per layer (GRIN: 16)",
    steps: "training steps of every run",
    batch: "sequences per batch",
    seq: "tokens (bytes) per sequence",
    lr: "peak learning rate, the same for every arm",
    evalPoints: "validation evaluations per run",
    evalBatches: "validation batches per evaluation and domain",
    auxAlpha:
      "global aux loss coefficient on every arm (GRIN does not state α; 0.01 as in the SparseMixer example)",
    jitterEpsV2: "SparseMixer-v2's ε of the drop mask (HF PhiMoE's router_jitter_noise default)",
    jitterEpsV1: "SparseMixer-v1's ε (the SparseMixer example's jitter_eps)",
  },
  groups,
  runs: (s, seeds) =>
    gridRuns(
      seeds,
      groups(s).flatMap((g) =>
        g.arms.map((a) => ({
          group: g.key,
          arm: a.key,
          train: trainOf(s, modelFor(g.key, a.key, s)),
        }))
      ),
    ),
  columns: [PPL_COLUMN, STEP_TIME_COLUMN],
  claims: (_s): Claim[] => {
    const [topk2, v2] = TOP2, [topk1, v1] = TOP1;
    return [
      lowerPpl(
        "top2",
        topk2,
        v2,
        "SparseMixer-v2 trains better than GShard-style top-2 routing (after warm-up)",
        "GRIN Fig. 2, Table 5",
      ),
      tokensSaved(
        "top2",
        topk2,
        v2,
        "SparseMixer-v2 trains better than GShard-style top-2 routing (after warm-up)",
        "GRIN Fig. 2",
      ),
      {
        group: "top2",
        paper:
          "GShard leads early (the first ~0.5T of 2.5T tokens), SparseMixer-v2 overtakes later",
        source: "GRIN Fig. 2",
        measured:
          "val ppl at the first evaluation: SparseMixer-v2 − TopK (positive = TopK leads early)",
        a: "topk",
        b: "sparsemixer-v2",
        value: (a, b) => b.curve[0].ppl - a.curve[0].ppl,
        expect: "positive",
        format: signed(3),
      },
      {
        ...lowerPpl(
          "top2",
          v2,
          topk2,
          "SparseMixer (8 experts, top-2) is worse than TopK",
          "Default MoE paper §4.4, Fig. 5",
        ),
        measured: `val ppl: ${topk2.label} − ${v2.label}`,
      },
      lowerPpl(
        "top1",
        topk1,
        v1,
        "SparseMixer-v1 trains better than Switch (top-1) routing",
        "SparseMixer (Liu et al. 2023), as GRIN's predecessor",
      ),
    ];
  },
  charts: (s) =>
    groups(s).flatMap((g) => [
      pplChart(g.key, g.label, `val_ppl_${g.key}.svg`),
      pplDifferenceChart(g.key, g.label, g.arms[0], `val_ppl_vs_topk_${g.key}.svg`),
    ]),
  notes: (s) => [
    `Every arm has the global aux loss (α = ${s.auxAlpha}, the unified normalisation: α at perfect balance) over the plain softmax of the router logits, as GRIN's (§3.3).`,
    "The top-2 TopK arm renormalises its two gates (GShard, GRIN's control recipe); the Default MoE paper's TopK does not — its SparseMixer claim is tested against this arm.",
    "SparseMixer-v1 is top-1 only (the released code), so it is compared with top-1 TopK (Switch) in its own group; its learnt per-channel gate scale ω is not part of moejit's language model.",
    "SparseMixer's training forward samples experts; evaluation takes the argmax with masked-softmax gates (c = 1).",
  ],
};
