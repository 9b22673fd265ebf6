/**
 * BAM (Branch-Attend-Mix; Zhang et al.) against BTX in miniature, per seed: pretrain a dense
 * parallel-attention seed on the three corpora, branch it into one expert per corpus by continued
 * pretraining, upcycle seed + experts into BTX (FFN experts, attention averaged), BAM with KV
 * experts and BAM with shared K/V, and train each mixture token-matched (as many tokens as BTX)
 * and compute-matched (as many training FLOPs as BTX: fewer steps for BAM).
 */
import { type ModelConfig, modelConfig } from "../../nn/config.ts";
import { initParams } from "../../nn/model.ts";
import { upcycle } from "../../nn/upcycle.ts";
import { trainingFlopsPerToken } from "../compute.ts";
import type { Claim, Column, GroupInfo, RunResult, RunSpec, Scale, Suite } from "../suite.ts";
import {
  CORPORA,
  lowerPpl,
  pplChart,
  pplDifferenceChart,
  signed,
  STEP_TIME_COLUMN,
  trainOf,
} from "./common.ts";

const DOMAINS = CORPORA.split("+");
const GROUP = "bam";

const MIXTURES = [
  { key: "btx", label: "BTX", method: "btx", matched: "tokens" },
  {
    key: "bam-kv",
    label: "BAM (KV experts)",
    method: "bam",
    attention: "kvExperts",
    matched: "tokens",
  },
  {
    key: "bam-shared",
    label: "BAM (shared KV)",
    method: "bam",
    attention: "sharedKV",
    matched: "tokens",
  },
  {
    key: "bam-kv-cm",
    label: "BAM CM (KV experts)",
    method: "bam",
    attention: "kvExperts",
    matched: "compute",
  },
  {
    key: "bam-shared-cm",
    label: "BAM CM (shared KV)",
    method: "bam",
    attention: "sharedKV",
    matched: "compute",
  },
] as const;

const ARMS = [
  { key: "seed", label: "Seed (dense)" },
  ...DOMAINS.map((d) => ({ key: `branch-${d}`, label: `${d} expert` })),
  ...MIXTURES.map(({ key, label }) => ({ key, label })),
];
const arm = (key: string) => ARMS.find((a) => a.key === key)!;

/** The dense seed's architecture: a parallel-attention block (BAM needs one), LayerNorm. */
function denseModel(s: Scale): Partial<ModelConfig> {
  return {
    ffn: "dense",
    block: "parallel",
    norm: "layernorm",
    dModel: s.dModel,
    nLayers: s.nLayers,
    nHeads: s.nHeads,
    dFf: s.dFf,
  };
}

/** The configuration an upcycling produces (built lazily from random dense models). */
function mixtureConfig(s: Scale, method: "bam" | "btx", attention?: "kvExperts" | "sharedKV") {
  const dense = modelConfig({ ...denseModel(s), vocabSize: 256, maxSeqLen: s.seq });
  const src = { config: dense, params: initParams(dense, 0) };
  return upcycle(src, DOMAINS.map(() => src), {
    method,
    ...(attention ? { attention } : {}),
  }).config;
}

/**
 * Steps of a compute-matched BAM mixture: BTX's training FLOPs (mixSteps of them) divided by
 * this mixture's FLOPs per step.
 *
 * @example
 * ```ts
 * computeMatchedSteps(bamSuite.scale, "kvExperts"); // fewer than bamSuite.scale.mixSteps
 * ```
 */
export function computeMatchedSteps(s: Scale, attention: "kvExperts" | "sharedKV"): number {
  const btx = trainingFlopsPerToken(mixtureConfig(s, "btx"), s.seq);
  const bam = trainingFlopsPerToken(mixtureConfig(s, "bam", attention), s.seq);
  return Math.max(1, Math.round((s.mixSteps * btx) / bam));
}

function runs(s: Scale, seeds: readonly number[]): RunSpec[] {
  const dense = denseModel(s);
  return seeds.flatMap((seed) => {
    const id = (a: string) => `${GROUP}/${a}/seed-${seed}`;
    const spec = (a: string, train: RunSpec["train"], init?: RunSpec["init"]): RunSpec => ({
      id: id(a),
      group: GROUP,
      arm: a,
      seed,
      train,
      ...(init ? { init } : {}),
    });
    const out: RunSpec[] = [spec("seed", trainOf(s, dense, { steps: s.seedSteps }))];
    for (const d of DOMAINS) {
      out.push(
        spec(
          `branch-${d}`,
          trainOf(s, undefined, { steps: s.branchSteps, data: d, lr: s.lr / 2 }),
          { kind: "continue", from: id("seed"), model: dense },
        ),
      );
    }
    for (const m of MIXTURES) {
      const attention = "attention" in m ? m.attention : undefined;
      const steps = m.matched === "tokens" ? s.mixSteps : computeMatchedSteps(s, attention!);
      out.push(spec(m.key, trainOf(s, undefined, { steps }), {
        kind: "upcycle",
        seed: id("seed"),
        experts: DOMAINS.map((d) => id(`branch-${d}`)),
        method: m.method,
        ...(attention ? { attention } : {}),
        topK: 1,
        model: dense,
      }));
    }
    return out;
  });
}

/** The paper's "Avg": the mean of the per-domain perplexities. */
const avgPpl = (r: RunResult) => {
  const v = DOMAINS.map((d) => r.pplByDomain[d]);
  return v.every((x) => x !== undefined) ? v.reduce((a, b) => a + b, 0) / v.length : null;
};

const millions = (v: number) => `${(v / 1e6).toFixed(2)}M`;

const COLUMNS: Column[] = [
  ...DOMAINS.map((d): Column => ({
    key: `ppl_${d}`,
    label: `val ppl ${d}`,
    value: (r) => r.pplByDomain[d] ?? null,
    digits: 3,
  })),
  { key: "ppl_avg", label: "Avg", value: avgPpl, digits: 3 },
  {
    key: "params_total",
    label: "params",
    value: (r) => r.params.total,
    digits: 0,
    format: millions,
  },
  {
    key: "params_active",
    label: "active",
    value: (r) => r.params.active,
    digits: 0,
    format: millions,
  },
  { key: "tokens", label: "tokens", value: (r) => r.tokens, digits: 0, format: millions },
  {
    key: "train_flops",
    label: "training FLOPs",
    value: (r) => r.flopsPerToken * r.tokens,
    digits: 0,
    format: (v) => v.toExponential(2),
  },
  STEP_TIME_COLUMN,
];

const groups = (_s: Scale): GroupInfo[] => [
  { key: GROUP, label: "seed, domain experts and mixtures", arms: ARMS.map((a) => ({ ...a })) },
];

export const bamSuite: Suite = {
  name: "bam",
  title: "BAM vs BTX: attention experts in upcycled mixtures, token- and compute-matched",
  summary:
    "BAM upcycles a dense parallel-attention seed and its domain-specialised copies into a " +
    "mixture whose attention layers are soft-routed experts too (KV experts, or shared K/V), " +
    "where BTX averages attention; on a 590M seed with code, law and math experts, every BAM " +
    "variant has a lower perplexity than BTX on every domain, data-matched (DM) and " +
    "compute-matched (CM). Here, per seed: a byte-level dense seed on the three corpora, one " +
    "expert per corpus, four experts per mixture (seed + three), top-1 FFN routing.",
  scale: {
    dModel: 128,
    nLayers: 2,
    nHeads: 4,
    dFf: 256,
    seedSteps: 600,
    branchSteps: 200,
    mixSteps: 300,
    batch: 16,
    seq: 128,
    lr: 3e-3,
    evalPoints: 6,
    evalBatches: 16,
  },
  quick: {
    dModel: 32,
    nLayers: 1,
    nHeads: 2,
    dFf: 32,
    seedSteps: 12,
    branchSteps: 6,
    mixSteps: 8,
    batch: 4,
    seq: 32,
    lr: 3e-3,
    evalPoints: 2,
    evalBatches: 2,
  },
  scaleDoc: {
    dModel: "model width",
    nLayers: "layers (parallel attention + FFN)",
    nHeads: "attention heads",
    dFf: "dense FFN / expert hidden size (SwiGLU)",
    seedSteps: "steps of seed pretraining on the mixture",
    branchSteps: "steps of continued pretraining per domain (peak lr halved)",
    mixSteps: "steps of each token-matched mixture (BTX, BAM); compute-matched BAM gets fewer",
    batch: "sequences per batch",
    seq: "tokens (bytes) per sequence",
    lr: "peak learning rate of pretraining and the mixtures",
    evalPoints: "validation evaluations per run",
    evalBatches: "validation batches per evaluation and domain",
  },
  groups,
  runs,
  columns: COLUMNS,
  claims: (_s) =>
    MIXTURES.filter((m) => m.key !== "btx").flatMap((m): Claim[] => {
      const cm = m.matched === "compute";
      const paper = `${m.label} has a lower perplexity than BTX on every domain${
        cm ? " (compute-matched)" : " (data-matched)"
      }`;
      const source = cm ? "BAM Table 1, CM rows" : "BAM Table 1, DM rows";
      return [
        ...DOMAINS.map((d) => lowerPpl(GROUP, arm("btx"), arm(m.key), paper, source, d)),
        {
          group: GROUP,
          paper,
          source,
          measured: `Avg (mean of the domains' val ppl): ${m.label} − BTX`,
          a: "btx",
          b: m.key,
          value: (a, b) => {
            const x = avgPpl(a), y = avgPpl(b);
            return x === null || y === null ? null : y - x;
          },
          expect: "negative",
          format: signed(3),
        },
      ];
    }),
  charts: (_s) => [
    {
      ...pplChart(GROUP, "mixtures (token- and compute-matched)", "val_ppl_mixtures.svg"),
      arms: MIXTURES.map((m) => m.key),
    },
    {
      ...pplDifferenceChart(GROUP, "token-matched mixtures", arm("btx"), "val_ppl_vs_btx.svg"),
      arms: MIXTURES.filter((m) => m.matched === "tokens").map((m) => m.key),
    },
  ],
  notes: (s) => {
    const kv = computeMatchedSteps(s, "kvExperts"), shared = computeMatchedSteps(s, "sharedKV");
    return [
      `Compute matching: the paper matches TPU-core-days; here, training FLOPs — 6 per active weight per token plus 3 × 4·S·d per attention expert per layer (the scores and the weighted values of a context of S = ${s.seq}), every attention expert counted (soft routing). BTX trains ${s.mixSteps} steps; BAM CM ${kv} (KV experts) and ${shared} (shared KV), so that steps × FLOPs per token match BTX's.`,
      "Each seed has its own dense seed model and domain experts (the seed changes initialisation and data order of every phase); the mixtures of a seed share them.",
      "Upcycling: experts copied, embeddings and norms averaged (and BTX's attention, and BAM's shared K/V [ASSUMED]); routers random. FFN routing top-1, gates not renormalised, aux loss 0.01 and z-loss 0.001 on the FFN router [ASSUMED: the paper gives no α, β].",
      "The domain experts are evaluated on their own domain only; the table's other cells for them are empty.",
    ];
  },
};
