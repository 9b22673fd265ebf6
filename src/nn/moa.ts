/**
 * Mixture of attention (MoA), BAM's attention experts (docs/methods.md §3):
 *
 *   y = Σ_j g_j(h) · MHA_j(h),   g(h) = softmax(W_router · h)   (soft routing: every expert)
 *
 * with N attention experts that own all their projections ("kvExperts") or only Q and O, sharing
 * one K and V ("sharedKV"). Top-k routing (the paper's ablation) keeps the k largest gates, not
 * renormalised, and zeroes the rest. All experts run as one batch: their projections are batched
 * matmuls over the stacked weights [N, d, d] and their attention one fused attention call over
 * [N·B, H, S, Dh], so N experts cost N× the FLOPs but not N× the kernels.
 */
import { fail } from "../errors.ts";
import { Tensor } from "../tensor.ts";
import { describe } from "../ops/prim.ts";
import { oneHot } from "../ops/indexing.ts";
import { attention, type AttentionOptions, linear, rope, type RopeKind } from "./layers.ts";
import { renamed } from "../deprecation.ts";

/** Parameters of one MoA layer: router [N, d]; q, o [N, d, d]; k, v [N, d, d] or shared [d, d]. */
export interface MoaParams {
  router: Tensor;
  q: Tensor;
  k: Tensor;
  v: Tensor;
  o: Tensor;
}

export interface MoaOptions {
  nHeads: number;
  /** RoPE in the rotate-half form (default) or no position encoding. */
  rope?: RopeKind;
  ropeTheta?: number;
  /** Keep only the top-k attention gates (not renormalised); 0 or absent: soft routing. */
  topK?: number;
  /** Use the fused attention kernel (default: when the head size allows; see nn.attention). */
  fusedAttention?: boolean;
  /** @deprecated `{ fused }` as `fusedAttention` (kept for one release, with a warning). */
  kernel?: AttentionOptions;
}

const KEYS = ["nHeads", "rope", "ropeTheta", "topK", "fusedAttention", "kernel"];

/** The result: the mixture's output [B, S, d] and the gates [B, S, N] it used. */
export interface MoaResult {
  y: Tensor;
  gates: Tensor;
}

/**
 * Causal mixture of attention experts with RoPE over x [B, S, d] (x is the normed block input).
 * Whether K/V are shared follows the parameters' shapes: `k`, `v` of shape [d, d] are shared.
 *
 * @example
 * ```ts
 * const { y, gates } = mj.nn.mixtureOfAttention(h, params.layers[0].attn, { nHeads: 4 });
 * ```
 */
export function mixtureOfAttention(x: Tensor, p: MoaParams, options: MoaOptions): MoaResult {
  let opts = options;
  if (opts && typeof opts === "object" && opts.kernel !== undefined) {
    const o = renamed("nn.mixtureOfAttention", opts, "kernel", "fusedAttention");
    const k = o.fusedAttention as AttentionOptions | boolean | undefined;
    opts = { ...o, fusedAttention: typeof k === "object" ? k?.fused : k };
  }
  for (const k of Object.keys(opts)) {
    if (!KEYS.includes(k)) {
      fail(
        "nn.mixtureOfAttention",
        `unknown option ${JSON.stringify(k)}; expected ${KEYS.join(", ")}`,
      );
    }
  }
  if (!(x instanceof Tensor) || x.ndim !== 3 || x.dtype !== "f32") {
    fail(
      "nn.mixtureOfAttention",
      `expected f32 x [B, S, d], got ${x instanceof Tensor ? describe(x) : typeof x}`,
    );
  }
  const [B, S, d] = x.shape;
  const r = p?.router;
  if (!(r instanceof Tensor) || r.ndim !== 2 || r.shape[1] !== d) {
    fail(
      "nn.mixtureOfAttention",
      `expected router [N, ${d}], got ${r instanceof Tensor ? describe(r) : typeof r}`,
    );
  }
  const N = r.shape[0];
  const stacked = [N, d, d].join(), single = [d, d].join();
  for (const name of ["q", "o", "k", "v"] as const) {
    const w = p[name];
    const ok = w instanceof Tensor &&
      (w.shape.join() === stacked || ((name === "k" || name === "v") && w.shape.join() === single));
    if (!ok) {
      fail(
        "nn.mixtureOfAttention",
        `${name} must be [${N}, ${d}, ${d}]${
          name === "k" || name === "v" ? ` (or [${d}, ${d}] when shared)` : ""
        }, got ${w instanceof Tensor ? describe(w) : typeof w}`,
      );
    }
  }
  const sharedK = p.k.ndim === 2, sharedV = p.v.ndim === 2;
  if (sharedK !== sharedV) {
    fail(
      "nn.mixtureOfAttention",
      `k and v must both be per-expert or both shared, got ${describe(p.k)} and ${describe(p.v)}`,
    );
  }
  const H = opts.nHeads, Dh = d / H;
  if (!Number.isInteger(H) || H < 1 || d % H) {
    fail("nn.mixtureOfAttention", `nHeads must divide d = ${d}, got ${H}`);
  }
  const topK = opts.topK ?? 0;
  if (!Number.isInteger(topK) || topK < 0 || topK > N) {
    fail("nn.mixtureOfAttention", `topK must be 0 (soft) or 1..${N}, got ${topK}`);
  }
  const theta = opts.ropeTheta ?? 10000;
  const kind = opts.rope ?? "rotateHalf";
  if (kind !== "rotateHalf" && kind !== "none") {
    fail(
      "nn.mixtureOfAttention",
      `rope must be "rotateHalf" or "none", got ${JSON.stringify(kind)}`,
    );
  }
  const position = (t: Tensor) => (kind === "none" ? t : rope(t, theta));

  const flat = x.reshape([1, B * S, d]);
  // Stacked projections: [1, T, d] · [N, d, d]ᵀ → [N, T, d] (the input broadcast over experts).
  const project = (w: Tensor) => flat.matmul(w.swapAxes(-2, -1));
  const perExpertHeads = (t: Tensor) =>
    t.reshape([N, B, S, H, Dh]).permute([0, 1, 3, 2, 4]).reshape([N * B, H, S, Dh]);
  const sharedHeads = (w: Tensor) => {
    // One projection for all experts, broadcast to each: [B, H, S, Dh] → [N·B, H, S, Dh].
    const t = linear(x, w).reshape([1, B, S, H, Dh]).permute([
      0,
      1,
      3,
      2,
      4,
    ]);
    return t.expand([N, B, H, S, Dh]).reshape([N * B, H, S, Dh]);
  };
  const q = position(perExpertHeads(project(p.q)));
  const k = position(sharedK ? sharedHeads(p.k) : perExpertHeads(project(p.k)));
  const v = sharedV ? sharedHeads(p.v) : perExpertHeads(project(p.v));
  const fused = opts.fusedAttention !== undefined ? { fused: opts.fusedAttention } : {};
  const heads = attention(q, k, v, { causal: true, ...fused }); // [N·B, H, S, Dh]
  const merged = heads.reshape([N, B, H, S, Dh]).permute([0, 1, 3, 2, 4]).reshape([N, B * S, d]);
  const outs = merged.matmul(p.o.swapAxes(-2, -1)); // [N, T, d]

  let gates = linear(x.reshape([B * S, d]), r).softmax(-1); // [T, N]
  if (topK > 0 && topK < N) {
    // Keep the k largest gates as they are; the mask carries no gradient.
    const keep = oneHot(gates.topk(topK).indices, N).sum(1);
    gates = gates.mul(keep);
  }
  const y = outs.mul(gates.transpose().reshape([N, B * S, 1])).sum(0).reshape([B, S, d]);
  return { y, gates: gates.reshape([B, S, N]) };
}
