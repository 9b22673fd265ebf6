/**
 * SparseMixer-v2 (GRIN) and SparseMixer-v1 routing estimators, following the released code
 * (microsoft/SparseMixer `sparsemixerv2_routing`, `SparseMixer`; docs/methods.md §5):
 *
 *  - the drop rule: expert i is masked when (z* − z_i) / max(|z_i|, z*) > 2ε (z* not made
 *    absolute), computed without gradient;
 *  - training selection by Gumbel-max over the masked logits, −log of Exp(1) draws;
 *  - v2: c = 0.3333 + 0.6667·[D = argmax p or u > 0.75], forward weight c·p_D (p the masked
 *    softmax), backward ∂L/∂z_j += g·p_D·(1[j=D] − p_j) with no c; slot 2 masks expert D₁ and
 *    builds its drop mask from the original logits; weights are not renormalised;
 *  - v1 (top-1): c = 0.5 + 0.5·[D = argmax or u > 0.5], forward c·p_D, the backward of the
 *    c-multiplication is ×2, then ordinary autodiff through the masked softmax;
 *  - eval: argmax selection, masked-softmax weights, c = 1.
 */
import { fail, formatValue } from "../../errors.ts";
import { Tensor } from "../../tensor.ts";
import { customVjp } from "../../autodiff/custom.ts";
import { stopGradient } from "../../ops/meta.ts";
import { stack } from "../../ops/movement.ts";
import { gatherTrusted, oneHot } from "../../ops/indexing.ts";
import { constant, describe } from "../../ops/prim.ts";
import { randomBits, uniformFromBits } from "../../ops/creation.ts";
import { where } from "../../ops/elementwise.ts";
import { renamed } from "../../deprecation.ts";
import type { Estimator, EstimatorContext, EstimatorLayerContext } from "../estimator.ts";
import { combine } from "../dispatch.ts";

/** Injected randomness: exponential draws [k, T, N] for Gumbel-max, uniform draws [k, T] for c. */
export type SparseMixerNoise = {
  exponential: Tensor;
  uniform: Tensor;
};

export interface SparseMixerOptions {
  /** Experts per token. */
  topK: number;
  /** @deprecated the same as `topK` (kept for one release). */
  k?: number;
  /** ε of the drop rule (default 0.01 for v2, HF PhiMoE's router_jitter_noise; 0.1 for v1). */
  jitterEps?: number;
  /** Training samples experts and scales gates; eval takes the argmax with c = 1 (default true). */
  training?: boolean;
  /** Replaces the random draws (tests, reproductions). */
  noise?: SparseMixerNoise;
  /** Key tensor for fresh draws per jitted call (see mj.rand), or a fixed seed. */
  key?: Tensor;
  seed?: number;
  /**
   * Selection-only bias [N] in score space (as balancers give it): shifts which experts are
   * masked and sampled, never the weights (see `selectionLogits`).
   */
  bias?: Tensor;
  /** Score function the gate uses: the masked softmax (default) or a per-expert sigmoid. */
  score?: "softmax" | "sigmoid";
}

export interface SparseMixerRouting {
  indices: Tensor;
  /** Forward gate values c·p_D ([T, k]); their backward is the estimator. */
  weights: Tensor;
  /** The c multipliers ([T, k]), for the paper's form of the expert gradient. */
  scale: Tensor;
}

const NEG_INF = -Infinity;

/** Drop mask of the code: (thr − z) / max(|z|, thr) > 2ε, with thr the row max (or given). */
function dropMask(z: Tensor, thr: Tensor, eps: number): Tensor {
  const factor = z.abs().maximum(thr);
  return thr.sub(z).div(factor).gt(2 * eps);
}

/** The draws: injected, or counter-based from a key/seed. */
function draws(opts: SparseMixerOptions, k: number, T: number, N: number): SparseMixerNoise {
  if (opts.noise) {
    const { exponential, uniform } = opts.noise;
    if (!(exponential instanceof Tensor) || exponential.shape.join() !== [k, T, N].join()) {
      fail(
        "moe.route",
        `noise.exponential must be f32[${k}, ${T}, ${N}], got ${
          exponential instanceof Tensor ? describe(exponential) : typeof exponential
        }`,
      );
    }
    if (!(uniform instanceof Tensor) || uniform.shape.join() !== [k, T].join()) {
      fail(
        "moe.route",
        `noise.uniform must be f32[${k}, ${T}], got ${
          uniform instanceof Tensor ? describe(uniform) : typeof uniform
        }`,
      );
    }
    return opts.noise;
  }
  const src = opts.key !== undefined ? { key: opts.key } : { seed: opts.seed };
  // Streams 2 and 3 keep these draws apart from other users of the same key.
  const u = uniformFromBits(randomBits([k, T, N], 2, src));
  const exponential = constant(1, [k, T, N], "f32").sub(u).log().neg(); // Exp(1) = −log(1 − U)
  const uniform = uniformFromBits(randomBits([k, T], 3, src));
  return { exponential, uniform };
}

/** Gate values of the selected experts under a mask, and everything the backward needs. */
function gate(z: Tensor, dropped: Tensor, score: "softmax" | "sigmoid"): Tensor {
  return score === "softmax"
    ? where(dropped, NEG_INF, z).softmax(-1)
    : where(dropped, 0, z.sigmoid());
}

const v2Weights = customVjp({
  name: "moe.sparsemixer.v2",
  // z: [T, N]; dropped: [k, T, N] bool; sel: [k, T] i32; c: [k, T]; score: static.
  fwd: (z: Tensor, dropped: Tensor, sel: Tensor, c: Tensor, score: "softmax" | "sigmoid") => {
    const k = sel.shape[0];
    const slots: Tensor[] = [];
    const ps: Tensor[] = [];
    for (let j = 0; j < k; j++) {
      const p = gate(z, dropped.slice([j]), score);
      ps.push(p);
      slots.push(gatherTrusted(p, 1, sel.slice([j]).reshape([-1, 1])).reshape([-1]));
    }
    const pD = stack(slots, 1); // [T, k]
    return { out: pD.mul(c.transpose()), saved: [pD, stack(ps, 0)] };
  },
  bwd: ([pD, p], g, [z, _d, sel, _c, score]) => {
    // ∂L/∂z_j = Σ_slot g·p_D·(1[j=D] − p_j) (softmax); g·p_D·(1 − p_D) at D only (sigmoid).
    const G = g as Tensor, S = sel as Tensor, Z = z as Tensor;
    const N = Z.shape[1];
    let dz: Tensor | null = null;
    for (let j = 0; j < S.shape[0]; j++) {
      const gp = G.slice([null, j]).mul(pD.slice([null, j])).reshape([-1, 1]); // [T, 1]
      const hot = oneHot(S.slice([j]), N);
      const term = score === "softmax"
        ? gp.mul(hot.sub(p.slice([j])))
        : gp.mul(hot).mul(pD.slice([null, j]).reshape([-1, 1]).neg().add(1));
      dz = dz ? dz.add(term) : term;
    }
    return [dz, null, null, null, null];
  },
  estimator: true,
});

const v1Scale = customVjp({
  name: "moe.sparsemixer.v1",
  // Forward c·p_D; the backward of the multiplication by c is ×2 (mid-point rule), whatever c.
  fwd: (pD: Tensor, c: Tensor) => pD.mul(c),
  bwd: (_s, g) => [(g as Tensor).mul(2), null],
  estimator: true,
});

/** Scores below this count as zero when a bias is mapped into logit space. */
const TINY_SCORE = 1e-20;

/**
 * What SparseMixer's selection sees, without gradient: `zs`, the logits its drop rule and
 * sampling use, and `rank`, what its argmax ranks (the eval pick, and δ's "is it the argmax").
 *
 * Balancers (loss-free, BIP) price experts in score space: they route by the top-k of s + b.
 * Adding b to the logits instead would mix units (BIP's prices are fractions of a probability,
 * so they would barely move a logit). So the bias scales each expert's score:
 * z' = z + log((s + b) / s). For softmax scores softmax(z') ∝ s + b, so Gumbel-max samples
 * experts in proportion to the biased scores; for sigmoid scores the shift is the same (monotone
 * in b). b = 0 gives z' = z exactly, and an expert priced to s + b ≤ 0 is never picked while
 * another is left. The argmax ranks s + b itself: BIP's prices make boundary tokens exactly
 * indifferent between experts, and one add (the same on every backend, ties to the lower index
 * as in top-k) keeps those ties where the log-mapped logits would break them by rounding.
 */
function selection(
  logits: Tensor,
  bias: Tensor | undefined,
  score: "softmax" | "sigmoid",
): { zs: Tensor; rank: Tensor } {
  const z = stopGradient(logits);
  if (!bias) return { zs: z, rank: z };
  const s = score === "sigmoid" ? z.sigmoid() : z.softmax(-1);
  const rank = s.add(stopGradient(bias));
  const zs = z.add(rank.maximum(TINY_SCORE).log().sub(s.maximum(TINY_SCORE).log()));
  return { zs, rank };
}

function checkCommon(opts: SparseMixerOptions, N: number): number {
  const eps = opts.jitterEps;
  if (eps !== undefined && (typeof eps !== "number" || !(eps >= 0))) {
    fail("moe.route", `jitterEps must be a number ≥ 0, got ${formatValue(eps)}`);
  }
  if (opts.training !== undefined && typeof opts.training !== "boolean") {
    fail("moe.route", `training must be a boolean, got ${formatValue(opts.training)}`);
  }
  if (
    opts.bias !== undefined &&
    (!(opts.bias instanceof Tensor) || opts.bias.shape.join() !== String(N))
  ) {
    fail("moe.route", `bias must be f32[${N}]`);
  }
  return eps ?? 0.01;
}

/**
 * SparseMixer-v2 routing for top-1 or top-2 (GRIN).
 *
 * @example
 * ```ts
 * const r = mj.moe.sparseMixerV2(logits, { topK: 2, jitterEps: 0.01, key: stepKey });
 * ```
 */
export function sparseMixerV2(logits: Tensor, options: SparseMixerOptions): SparseMixerRouting {
  const opts = renamed("moe.sparseMixerV2", options, "k", "topK");
  const [T, N] = logits.shape;
  const k = opts.topK;
  const problem = sparseMixer.checkTopK!(k);
  if (problem) fail("moe.route", `estimator "sparsemixer" ${problem}`);
  const eps = checkCommon(opts, N);
  const training = opts.training ?? true;
  const score = opts.score ?? "softmax";
  // Selection sees the (stopped, biased) logits; the gate uses the logits.
  const { zs, rank } = selection(logits, opts.bias, score);
  const noise = training ? draws(opts, k, T, N) : null;
  const drops: Tensor[] = [], sels: Tensor[] = [], cs: Tensor[] = [];
  let previous: Tensor | null = null; // one-hot of slot 1's choice
  for (let j = 0; j < k; j++) {
    // Slot 2 removes slot 1's expert, then builds its drop mask from the original logits.
    const zj = previous ? where(previous, NEG_INF, zs) : zs;
    const thr = zj.max(-1, true);
    let dropped = dropMask(zs, thr, eps);
    if (previous) dropped = dropped.logicalOr(previous);
    const masked = where(dropped, NEG_INF, zs);
    const sel = training
      ? masked.sub(noise!.exponential.slice([j]).log()).argmax(-1)
      : (previous ? where(previous, NEG_INF, rank) : rank).argmax(-1);
    let c: Tensor;
    if (training) {
      // δ: the sample is the argmax of the masked softmax, i.e. of the masked ranking.
      const top = where(dropped, NEG_INF, rank).argmax(-1);
      const first = sel.eq(top).logicalOr(noise!.uniform.slice([j]).gt(0.75));
      c = first.cast("f32").mul(0.6667).add(0.3333);
    } else {
      c = constant(1, [T], "f32");
    }
    drops.push(dropped);
    sels.push(sel);
    cs.push(c);
    previous = oneHot(sel, N, "bool");
  }
  const dropped = stack(drops, 0), sel = stack(sels, 0), c = stack(cs, 0);
  const weights = v2Weights(logits, dropped, sel, c, score) as Tensor;
  return { indices: sel.transpose(), weights, scale: c.transpose() };
}

/**
 * SparseMixer-v1 routing (top-1, mid-point rule). The per-channel ω is applied by the layer.
 *
 * @example
 * ```ts
 * const r = mj.moe.sparseMixerV1(logits, { topK: 1, jitterEps: 0.1, seed: 3 });
 * ```
 */
export function sparseMixerV1(logits: Tensor, options: SparseMixerOptions): SparseMixerRouting {
  const opts = renamed("moe.sparseMixerV1", options, "k", "topK");
  const [T, N] = logits.shape;
  const problem = sparseMixerV1Estimator.checkTopK!(opts.topK);
  if (problem) fail("moe.route", `estimator "sparsemixer-v1" ${problem}`);
  checkCommon(opts, N);
  const eps = opts.jitterEps ?? 0.1;
  const training = opts.training ?? true;
  const score = opts.score ?? "softmax";
  const { zs, rank } = selection(logits, opts.bias, score);
  const dropped = dropMask(zs, zs.max(-1, true), eps);
  const p = gate(logits, dropped, score); // differentiable: autodiff runs through it
  let sel: Tensor;
  let scale: Tensor;
  if (training) {
    const noise = draws(opts, 1, T, N);
    sel = where(dropped, NEG_INF, zs).sub(noise.exponential.slice([0]).log()).argmax(-1);
    const first = sel.eq(rank.argmax(-1)).logicalOr(noise.uniform.slice([0]).gt(0.5));
    scale = first.cast("f32").mul(0.5).add(0.5);
  } else {
    sel = rank.argmax(-1);
    scale = constant(1, [T], "f32");
  }
  const pD = gatherTrusted(p, 1, sel.reshape([-1, 1])).reshape([-1]);
  const weights = training ? (v1Scale(pD, scale) as Tensor) : pD;
  return {
    indices: sel.reshape([T, 1]),
    weights: weights.reshape([T, 1]),
    scale: scale.reshape([T, 1]),
  };
}

/** The options of both estimators once filled in. */
export interface SparseMixerSettings {
  jitterEps: number;
  expertGrad: "code" | "paper";
}

const jitterEps = (dflt: number, what: string) => ({
  default: dflt,
  doc: `ε of the drop rule (${what})`,
  check: (v: unknown) =>
    typeof v === "number" && v >= 0 ? undefined : `must be a number ≥ 0, got ${formatValue(v)}`,
});

const expertGrad = {
  default: "code",
  doc:
    'the expert-weight gradient carries the gate multiplier c like the released code ("code"), or not, like the paper\'s Algorithm 1 ("paper")',
  check: (v: unknown) =>
    v === "code" || v === "paper"
      ? undefined
      : `must be one of "code", "paper", got ${formatValue(v)}`,
};

const shorthands = {
  jitterEps: { appliesTo: "applies to the sparsemixer estimators", option: "jitterEps" },
  expertGrad: { appliesTo: "applies to the sparsemixer estimators", option: "expertGrad" },
};

/** The routing options both estimators hand to their functions. */
function mixerOptions(ctx: EstimatorContext, o: SparseMixerSettings): SparseMixerOptions {
  return {
    topK: ctx.topK,
    jitterEps: o.jitterEps,
    training: ctx.training,
    noise: ctx.noise as SparseMixerNoise | undefined,
    key: ctx.key,
    seed: ctx.seed,
    bias: ctx.bias,
    score: ctx.score,
  };
}

/**
 * The paper's form of the expert gradient ("paper"): the forward is c·p_D·E as always, experts
 * see p_D (no c), the router sees ⟨g, E⟩ as in the code.
 */
function paperExpertGrad(ctx: EstimatorLayerContext): Tensor {
  const { routing: r, table, expertOutputs: ys } = ctx;
  const unscaled = stopGradient(r.weights.div(r.scale));
  const toExperts = combine(ys, table, unscaled);
  const toRouter = combine(stopGradient(ys), table, r.weights);
  return toExperts.add(stopGradient(ctx.y.sub(toExperts))).add(
    toRouter.sub(stopGradient(toRouter)),
  );
}

const megatronDetail = {
  v2: (eps: number) =>
    `In training this model samples its experts (Gumbel-max under an ε-mask, ε = ${eps}) with SparseMixer's router gradient; at inference it takes the argmax under the mask, weighted by the masked softmax. The flags above are plain softmax top-k routing, a different function (transformers' PhiMoE computes this one)`,
  v1:
    "Top-1 routing sampled under an ε-mask, with the mid-point router gradient; the flags above are plain softmax top-1 routing, a different function",
};

/** `estimator: "sparsemixer"`: SparseMixer-v2 (GRIN), top-1 or top-2. */
export const sparseMixer: Estimator<SparseMixerSettings> = {
  name: "sparsemixer",
  description:
    "SparseMixer-v2 (GRIN, Liu et al. 2024): experts sampled under an ε-mask, a mid-point gradient estimate for the router",
  options: {
    jitterEps: jitterEps(0.01, "HF PhiMoE's router_jitter_noise"),
    expertGrad,
  },
  shorthands,
  sampling: true,
  ownGates: true,
  trustedIndices: true,
  checkTopK: (k) => (k === 1 || k === 2 ? undefined : `supports topK 1 or 2, got ${k}`),
  route: (ctx, o) => sparseMixerV2(ctx.logits, mixerOptions(ctx, o)),
  layer: (ctx, o) => ({ y: o.expertGrad === "paper" ? paperExpertGrad(ctx) : ctx.y }),
  hfFamily: "phimoe",
  inference: "SparseMixer's masked-softmax weight of the argmax",
  megatron: (o) => ({ missing: "SparseMixer-v2 (GRIN)", detail: megatronDetail.v2(o.jitterEps) }),
  card: (o) => [["SparseMixer ε", String(o.jitterEps)]],
};

/** `estimator: "sparsemixer-v1"`: SparseMixer-v1, top-1, with the per-channel scale ω. */
export const sparseMixerV1Estimator: Estimator<SparseMixerSettings> = {
  name: "sparsemixer-v1",
  description:
    "SparseMixer-v1 (Liu et al. 2023): top-1 sampled under an ε-mask, mid-point rule for the router",
  options: { jitterEps: jitterEps(0.1, "v1's default"), expertGrad },
  shorthands,
  sampling: true,
  ownGates: true,
  trustedIndices: true,
  checkTopK: (k) => (k === 1 ? undefined : `is top-1 only, got topK ${k}`),
  params: { omega: { shape: (d) => [d], doc: "per-channel gate scale ω (init ones)" } },
  route: (ctx, o) => sparseMixerV1(ctx.logits, mixerOptions(ctx, o)),
  layer(ctx, o) {
    const y = o.expertGrad === "paper" ? paperExpertGrad(ctx) : ctx.y;
    return { y: ctx.params.omega ? y.mul(ctx.params.omega) : y };
  },
  inference: "SparseMixer's masked-softmax weight of the argmax",
  megatron: () => ({ missing: "SparseMixer-v1", detail: megatronDetail.v1 }),
  card: (o) => [["SparseMixer ε", String(o.jitterEps)]],
};
