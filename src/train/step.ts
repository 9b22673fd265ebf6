/**
 * The compiled training and evaluation steps of the language model. A training step is one
 * `mj.jit` function — forward, cross-entropy plus balancer losses, backward, gradient clipping,
 * AdamW, MoE layer-state updates and the step's metrics — so it runs as one submission, and the
 * learning rate and step counter are runtime scalars (step 2 onward compiles nothing).
 *
 * Every step also tests its loss and global gradient norm for NaN/±Inf on their bits, inside
 * the compiled program, and returns the result in its metrics vector: WGSL lets an
 * implementation assume floats are finite (llvmpipe folds `x != x` to false), but an integer
 * comparison of the bits cannot be folded away, so the check costs no extra readback and cannot
 * be optimised out.
 */
import { fail } from "../errors.ts";
import type { Tensor } from "../tensor.ts";
import { jit } from "../jit.ts";
import { valueAndGrad } from "../autodiff/grad.ts";
import { constant } from "../ops/prim.ts";
import { concat, stack } from "../ops/movement.ts";
import { metrics as layerMetrics } from "../moe/metrics.ts";
import type { LayerState } from "../moe/layer.ts";
import type { RouteResult } from "../moe/route.ts";
import { type AttentionOptions, crossEntropy } from "../nn/layers.ts";
import { balancersOf, forward, initialLayerState, type Params } from "../nn/model.ts";
import { renamed } from "../deprecation.ts";
import { layerBalance, type ModelConfig } from "../nn/config.ts";
import { type AdamW, type AdamWState, clipGradNorm, globalNorm } from "../nn/optim.ts";

/** Scalar metrics per MoE layer, in the order they are packed into a step's metrics vector. */
export const LAYER_SCALARS = [
  "max_vio",
  "load_balancing_loss",
  "z_loss",
  "router_entropy",
  "dead_experts",
] as const;

/** Everything a training step reads and writes besides the batch. */
export interface TrainState {
  params: Params;
  opt: AdamWState<Params>;
  /** Per-MoE-layer state (Default MoE's EMA defaults, loss-free bias, BIP prices). */
  layers: LayerState[];
}

/** A step's metrics as read back on the host. */
export interface StepMetrics {
  /** Cross-entropy plus balancer losses (what was differentiated). */
  loss: number;
  /** Next-token cross-entropy (nats per token). */
  ce: number;
  /** Global gradient norm before clipping. */
  grad_norm: number;
  /**
   * The quantities of the step that were NaN or ±Inf, tested on their bits in the step
   * ("loss", "grad_norm"); empty for a healthy step.
   */
  nonFinite: ("loss" | "grad_norm")[];
  /**
   * One record per MoE layer: LAYER_SCALARS, tokens_per_expert, and the metrics the layer's
   * balancers declare (by name).
   */
  layers: (
    & Record<(typeof LAYER_SCALARS)[number], number>
    & { tokens_per_expert: number[] }
    & Record<string, number | number[]>
  )[];
}

/**
 * The metrics each MoE layer's balancers declare, in the order a step packs them (balancers in
 * list order, each its names in order). A name may appear once per layer and must not be one of
 * LAYER_SCALARS.
 *
 * @example
 * ```ts
 * balancerMetricNames(config); // e.g. [["bias_range"], []]
 * ```
 */
export function balancerMetricNames(config: ModelConfig): string[][] {
  if (config.ffn !== "moe") return [];
  return Array.from({ length: config.nLayers }, (_, l) => {
    const names = balancersOf(layerBalance(config, l), config.maxSeqLen).flatMap((b) =>
      b.metrics ?? []
    );
    for (const [i, n] of names.entries()) {
      if ((LAYER_SCALARS as readonly string[]).includes(n) || n === "tokens_per_expert") {
        fail("train", `a balancer of layer ${l} declares metric ${n}, which every layer logs`);
      }
      if (names.indexOf(n) !== i) {
        fail("train", `two balancers of layer ${l} declare metric ${n}`);
      }
    }
    return names;
  });
}

/** The length of the packed metrics vector for a model. */
function metricsLength(config: ModelConfig): number {
  const moeLayers = config.ffn === "moe" ? config.nLayers : 0;
  const extra = balancerMetricNames(config).reduce((a, n) => a + n.length, 0);
  return 6 + moeLayers * (LAYER_SCALARS.length + config.experts) + extra;
}

/**
 * 1 where an element of an f32 tensor is NaN or ±Inf, else 0 (f32), decided on its bits: the
 * exponent field is all ones exactly when the bits lie in [0x7f800000, 0x80000000) or at or
 * above 0xff800000. Integer comparisons survive a compiler that assumes finite floats.
 *
 * @example
 * ```ts
 * await nonFiniteBits(mj.tensor([1, NaN, -Infinity])).data(); // [0, 1, 1]
 * ```
 */
export function nonFiniteBits(x: Tensor): Tensor {
  const bits = x.bitcast("u32");
  const positive = bits.ge(0x7f800000).logicalAnd(bits.lt(0x80000000));
  return positive.logicalOr(bits.ge(0xff800000)).cast("f32");
}

/** All of a step's metrics in one f32 vector, so that reading them back is one small copy. */
function packMetrics(
  loss: Tensor,
  ce: Tensor,
  gradNorm: Tensor,
  routing: readonly RouteResult[],
  extra: readonly string[][],
): Tensor {
  // [loss, ce, grad norm, and 1 for each of them that is NaN or ±Inf]: the tests fuse into
  // the kernel that packs the metrics (no extra kernel, no extra readback).
  const head = concat([loss.reshape([1]), ce.reshape([1]), gradNorm.reshape([1])], 0);
  const parts = [head, nonFiniteBits(head)];
  for (const r of routing) {
    const m = layerMetrics(r);
    for (const name of LAYER_SCALARS) parts.push(m[name].cast("f32").reshape([1]));
    parts.push(m.tokens_per_expert.cast("f32"));
  }
  // Then every layer's balancer metrics (after all layers: the layout above stays fixed).
  routing.forEach((r, l) => {
    for (const name of extra[l] ?? []) parts.push(r.metrics[name].cast("f32").reshape([1]));
  });
  return concat(parts, 0);
}

/** Unpacks a metrics vector read back from a step. */
export function unpackMetrics(v: ArrayLike<number>, config: ModelConfig): StepMetrics {
  if (v.length !== metricsLength(config)) {
    fail(
      "train",
      `internal: metrics vector has ${v.length} entries, expected ${metricsLength(config)}`,
    );
  }
  // The flags are the step's own bit tests (0 or 1); the host re-checks the values too.
  const nonFinite: StepMetrics["nonFinite"] = [];
  if (v[3] !== 0 || !Number.isFinite(v[0])) nonFinite.push("loss");
  if (v[5] !== 0 || !Number.isFinite(v[2])) nonFinite.push("grad_norm");
  const out: StepMetrics = { loss: v[0], ce: v[1], grad_norm: v[2], nonFinite, layers: [] };
  let o = 6;
  const moeLayers = config.ffn === "moe" ? config.nLayers : 0;
  for (let l = 0; l < moeLayers; l++) {
    const rec = {} as StepMetrics["layers"][number];
    for (const name of LAYER_SCALARS) rec[name] = v[o++];
    rec.tokens_per_expert = Array.from({ length: config.experts }, (_, e) => Math.round(v[o + e]));
    o += config.experts;
    out.layers.push(rec);
  }
  balancerMetricNames(config).forEach((names, l) => {
    for (const name of names) out.layers[l][name] = v[o++];
  });
  return out;
}

/**
 * The random key of a training step: [seed, step] as u32, built in the graph from the step
 * counter (a runtime scalar), so every step draws fresh noise without uploading anything and a
 * resumed run draws the same noise as an uninterrupted one.
 */
function stepKey(seed: number, step: Tensor): Tensor {
  return stack([constant(seed >>> 0, [], "u32"), step.cast("u32")]);
}

export interface TrainStepOptions {
  optimizer: AdamW;
  /** Global gradient-norm clip (default 1; 0 or Infinity disables). */
  clip?: number;
  /** Seed of the sampling estimators' noise (mixed with the step counter). */
  seed?: number;
  /** Use the fused attention kernel (default: when the head size allows; see nn.attention). */
  fusedAttention?: boolean;
  /** @deprecated `{ fused }` as `fusedAttention` (kept for one release, with a warning). */
  attention?: AttentionOptions;
}

/** A compiled training step: (state, inputs, targets, lr, step) → next state and metrics. */
export type TrainStep = (
  state: TrainState,
  inputs: Tensor,
  targets: Tensor,
  lr: number,
  step: number,
) => Promise<{ state: TrainState; metrics: Tensor }>;

/**
 * Builds the compiled training step of a model.
 *
 * @example
 * ```ts
 * const step = mj.train.trainStep(config, { optimizer: mj.optim.adamw() });
 * const out = await step(state, inputs, targets, lrAt(i), i); // i is 1-based
 * state = out.state; // out.metrics: packed f32 vector, read with unpackMetrics when logging
 * ```
 */
export function trainStep(config: ModelConfig, options: TrainStepOptions): TrainStep {
  let o = options;
  if (options.attention !== undefined) {
    const r = renamed("train.trainStep", options, "attention", "fusedAttention");
    const k = r.fusedAttention as AttentionOptions | boolean | undefined;
    o = { ...r, fusedAttention: typeof k === "object" ? k?.fused : k };
  }
  const clip = o.clip ?? 1;
  const extra = balancerMetricNames(config);
  const seed = o.seed ?? 0;
  const V = config.vocabSize;
  const fn = (s: TrainState, inputs: Tensor, targets: Tensor, lr: number, step: number) => {
    const stepT = step as unknown as Tensor; // a runtime scalar inside jit
    const key = stepKey(seed, stepT);
    const lossFn = (p: Params) => {
      const r = forward(p, inputs, config, {
        training: true,
        key,
        state: s.layers,
        ...(o.fusedAttention !== undefined ? { fusedAttention: o.fusedAttention } : {}),
      });
      const ce = crossEntropy(r.logits.reshape([-1, V]), targets.reshape([-1]));
      const total = Object.values(r.losses).reduce((a, b) => a.add(b), ce);
      return [total, { ce, r }] as const;
    };
    const [loss, [g], aux] = valueAndGrad(lossFn, { hasAux: true })(s.params);
    const clipped = clip > 0 && Number.isFinite(clip) ? clipGradNorm(g as Params, clip) : null;
    const grads = clipped ? clipped.grads : (g as Params);
    // Computed without clipping too: every step's gradient norm is logged and checked.
    const gradNorm = clipped ? clipped.norm : globalNorm(g);
    const upd = o.optimizer.update(s.params, grads, s.opt, lr, stepT);
    return {
      state: { params: upd.params, opt: upd.state, layers: aux.r.state },
      metrics: packMetrics(loss, aux.ce, gradNorm, aux.r.routing, extra),
    };
  };
  return jit(fn, { name: "train step" }) as unknown as TrainStep;
}

/** A compiled evaluation step: next-token NLL summed per row [B] and per-layer expert loads. */
export type EvalStep = (
  params: Params,
  layers: LayerState[],
  inputs: Tensor,
  targets: Tensor,
) => Promise<{ nll: Tensor; counts: Tensor[] }>;

/**
 * Builds the compiled evaluation step (inference routing, no sampling, no state updates).
 *
 * @example
 * ```ts
 * const evalStep = mj.train.evalStep(config);
 * const { nll } = await evalStep(params, layers, inputs, targets); // [B]: summed per row
 * ```
 */
export function evalStep(config: ModelConfig): EvalStep {
  const V = config.vocabSize;
  const fn = (params: Params, layers: LayerState[], inputs: Tensor, targets: Tensor) => {
    const r = forward(params, inputs, config, { training: false, state: layers });
    const [B, S] = targets.shape;
    const logits = r.logits.reshape([-1, V]);
    const picked = logits.gather(1, targets.reshape([-1, 1])).reshape([-1]);
    const nll = logits.logsumexp(-1).sub(picked).reshape([B, S]).sum(-1);
    return { nll, counts: r.routing.map((x) => x.counts) };
  };
  return jit(fn, { name: "eval step" });
}

/**
 * Fresh per-layer MoE state with the structure a training step returns: what each layer's
 * balancers and estimator declare, at their initial values. Passing it to the first step makes
 * step 1 and step 2 share one compiled program.
 *
 * @example
 * ```ts
 * const layers = initLayerState(params, config);
 * ```
 */
export function initLayerState(_params: Params, config: ModelConfig): LayerState[] {
  return initialLayerState(config);
}
