/**
 * Balance metrics per MoE layer and step, with Megatron/Hugging Face names where they exist:
 * tokens_per_expert, max_vio, load_balancing_loss, z_loss, dead_experts, router_entropy.
 * They are tensors (computed in the step, read back only when logged); `aggregate` combines the
 * read values of several layers.
 */
import { fail } from "../errors.ts";
import type { Tensor } from "../tensor.ts";
import { stopGradient } from "../ops/meta.ts";
import { findMarked } from "./routing.ts";

export interface LayerMetrics {
  /** [N] i32 (token, slot) pairs per expert. */
  tokens_per_expert: Tensor;
  /** (max_i c_i − c̄) / c̄ with c̄ = T·K/N: 0 at perfect balance (Loss-Free's MaxVio_batch). */
  max_vio: Tensor;
  /** N·Σ_i (c_i/(T·K))·P_i, the unified auxiliary loss without its α (1 at perfect balance). */
  load_balancing_loss: Tensor;
  /** mean_t (logsumexp_j z_{t,j})², the z-loss without its β. */
  z_loss: Tensor;
  /** Experts that received no token. */
  dead_experts: Tensor;
  /** Mean over tokens of the router's entropy −Σ_i π_i log π_i (nats). */
  router_entropy: Tensor;
}

/**
 * Metrics of one layer's routing (a `moe.layer` or `moe.route` result): the standard ones above,
 * plus the scalar metrics its balancers declared (`r.metrics`, e.g. a registered balancer's own).
 *
 * @example
 * ```ts
 * const m = mj.balance.metrics(r);
 * console.log(await m.max_vio.item());
 * ```
 */
export function metrics(
  r: {
    scores: Tensor;
    weights: Tensor;
    indices: Tensor;
    counts: Tensor;
    metrics?: Record<string, Tensor>;
  },
): LayerMetrics & Record<string, Tensor> {
  if (!r || typeof r !== "object" || !r.scores || !r.indices || !r.counts) {
    fail(
      "balance.metrics",
      "expected a routing result with scores, indices and counts (from moe.layer or moe.route)",
    );
  }
  const [T, k] = r.indices.shape;
  const N = r.counts.shape[0];
  const counts = r.counts.cast("f32");
  const mean = (T * k) / N;
  const pi = stopGradient(findMarked([r.scores], "moe.scores"));
  const logits = stopGradient(findMarked([r.scores, r.weights], "moe.logits"));
  return {
    ...(r.metrics ?? {}),
    tokens_per_expert: r.counts,
    max_vio: counts.max().sub(mean).div(mean),
    load_balancing_loss: counts.div(T * k).mul(pi.mean(0)).sum().mul(N),
    z_loss: logits.logsumexp(-1).square().mean(),
    dead_experts: r.counts.eq(0).cast("i32").sum(),
    router_entropy: pi.mul(pi.maximum(1e-30).log()).sum(-1).mean().neg(),
  };
}

/**
 * MaxVio of loads counted over many batches (MaxVio_global over an evaluation set): the
 * summed counts of each expert and the number of (token, slot) pairs they cover.
 */
export function maxVio(counts: ArrayLike<number>): number {
  const c = Array.from(counts, Number);
  const total = c.reduce((a, b) => a + b, 0);
  if (!c.length || total === 0) return 0;
  const mean = total / c.length;
  return (Math.max(...c) - mean) / mean;
}

/**
 * Mean and max over layers of each scalar metric (numbers already read back); a metric only some
 * layers report (a balancer's) is aggregated over those layers.
 *
 * @example
 * ```ts
 * mj.balance.aggregate([{ max_vio: 0.5 }, { max_vio: 1.5 }]); // { mean: { max_vio: 1 }, max: { max_vio: 1.5 } }
 * ```
 */
export function aggregate(
  perLayer: readonly Record<string, number>[],
): { mean: Record<string, number>; max: Record<string, number> } {
  const mean: Record<string, number> = {}, max: Record<string, number> = {};
  const keys = [...new Set(perLayer.flatMap((m) => Object.keys(m)))];
  for (const key of keys) {
    const vals = perLayer.filter((m) => key in m).map((m) => m[key]);
    mean[key] = vals.reduce((a, b) => a + b, 0) / vals.length;
    max[key] = Math.max(...vals);
  }
  return { mean, max };
}
