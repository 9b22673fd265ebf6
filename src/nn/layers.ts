/**
 * Neural-network layers as functions of tensors and parameter (sub)trees: they build graph, own
 * nothing, and differentiate like any other op.
 */
import { MAX_LOOP_ITERATIONS } from "../../codegen/lower.ts";
import { fail, formatValue } from "../errors.ts";
import { Tensor } from "../tensor.ts";
import { describe, prim } from "../ops/prim.ts";
import { checkIndex, gatherTrusted, takeRowsTrusted } from "../ops/indexing.ts";
import { concat } from "../ops/movement.ts";
import { fromHost } from "../ops/creation.ts";
import { iotaAlong } from "../ops/meta.ts";
import { where } from "../ops/elementwise.ts";

/**
 * `x · wᵀ (+ b)` with `w` in PyTorch's `[out, in]` layout; x may have any leading dims.
 *
 * @example
 * ```ts
 * const y = mj.nn.linear(x, w); // x [B, S, in], w [out, in] → [B, S, out]
 * ```
 */
export function linear(x: Tensor, w: Tensor, b?: Tensor): Tensor {
  if (
    !(x instanceof Tensor) || !(w instanceof Tensor) || w.ndim !== 2 ||
    x.shape[x.ndim - 1] !== w.shape[1]
  ) {
    fail(
      "nn.linear",
      `expected x [..., ${w instanceof Tensor ? w.shape[1] : "in"}] and w [out, in], got ${
        x instanceof Tensor ? describe(x) : typeof x
      } and ${w instanceof Tensor ? describe(w) : typeof w}`,
    );
  }
  const lead = x.shape.slice(0, -1);
  const y = x.reshape([-1, w.shape[1]]).matmul(w.transpose()).reshape([...lead, w.shape[0]]);
  return b ? y.add(b) : y;
}

/** Rows of an embedding table `[V, d]` for integer ids of any shape → `[..., d]`. */
export function embedding(ids: Tensor, table: Tensor): Tensor {
  if (!(ids instanceof Tensor) || ids.dtype !== "i32") {
    fail(
      "nn.embedding",
      `expected i32 token ids, got ${ids instanceof Tensor ? describe(ids) : typeof ids}`,
    );
  }
  if (!(table instanceof Tensor) || table.ndim !== 2) {
    fail(
      "nn.embedding",
      `expected a table [V, d], got ${table instanceof Tensor ? describe(table) : typeof table}`,
    );
  }
  const rows = checkIndex(
    "nn.embedding",
    ids.reshape([ids.size]),
    table.shape[0],
    "the vocabulary",
  );
  return takeRowsTrusted(table, rows).reshape([...ids.shape, table.shape[1]]);
}

/** RMSNorm over the last axis: x / √(mean(x²) + ε) · w. */
export function rmsNorm(x: Tensor, weight: Tensor, eps = 1e-5): Tensor {
  return x.mul(x.square().mean(-1, true).add(eps).rsqrt()).mul(weight);
}

/** LayerNorm over the last axis: (x − μ)/√(σ² + ε) · w + b. */
export function layerNorm(x: Tensor, weight: Tensor, bias?: Tensor, eps = 1e-5): Tensor {
  const mu = x.mean(-1, true);
  const centered = x.sub(mu);
  const y = centered.mul(centered.square().mean(-1, true).add(eps).rsqrt()).mul(weight);
  return bias ? y.add(bias) : y;
}

/** A norm from a parameter subtree `{ weight, bias? }`: LayerNorm with a bias, else RMSNorm. */
export function norm(
  x: Tensor,
  p: { weight: Tensor; bias?: Tensor },
  kind: "rmsnorm" | "layernorm",
  eps: number,
): Tensor {
  return kind === "layernorm" ? layerNorm(x, p.weight, p.bias, eps) : rmsNorm(x, p.weight, eps);
}

const ropeTables = new Map<string, [Tensor, Tensor]>();

/** cos and sin tables [S, Dh/2] for RoPE with base `theta` (host constants, cached). */
function ropeTable(S: number, Dh: number, theta: number): [Tensor, Tensor] {
  const key = `${S}|${Dh}|${theta}`;
  let t = ropeTables.get(key);
  if (!t) {
    const half = Dh / 2;
    const cos = new Float32Array(S * half), sin = new Float32Array(S * half);
    for (let p = 0; p < S; p++) {
      for (let i = 0; i < half; i++) {
        const a = p * Math.pow(theta, (-2 * i) / Dh);
        cos[p * half + i] = Math.cos(a);
        sin[p * half + i] = Math.sin(a);
      }
    }
    t = [fromHost(cos, [S, half], "f32"), fromHost(sin, [S, half], "f32")];
    ropeTables.set(key, t);
  }
  return t;
}

/** RoPE's base must be a positive finite number: 0 would make every angle NaN (0⁻ˣ·p). */
export function checkRopeTheta(op: string, theta: unknown): number {
  if (typeof theta !== "number" || !(theta > 0) || !Number.isFinite(theta)) {
    fail(op, `ropeTheta must be a positive finite number (RoPE's base), got ${formatValue(theta)}`);
  }
  return theta;
}

/** Position encodings of attention: RoPE in the rotate-half form, or none. */
export type RopeKind = "rotateHalf" | "none";

/**
 * Rotary position embedding over x [..., S, Dh] (e.g. [B, H, S, Dh]) in the half-split form of Hugging Face's
 * Llama/Mixtral (rotate_half), so exported checkpoints agree: x·cos + rotate_half(x)·sin.
 */
export function rope(x: Tensor, theta = 10000): Tensor {
  if (!(x instanceof Tensor) || x.ndim < 2 || x.shape[x.ndim - 1] % 2) {
    fail(
      "nn.rope",
      `expected [..., S, Dh] (e.g. [B, H, S, Dh]) with an even Dh, got ${
        x instanceof Tensor ? describe(x) : typeof x
      }`,
    );
  }
  checkRopeTheta("nn.rope", theta);
  const a = x.ndim - 1;
  const S = x.shape[a - 1], Dh = x.shape[a];
  const half = Dh / 2;
  const [cos, sin] = ropeTable(S, Dh, theta);
  const x1 = x.narrow(a, 0, half), x2 = x.narrow(a, half, half);
  // [x1·cos − x2·sin, x2·cos + x1·sin]
  return concat([x1.mul(cos).sub(x2.mul(sin)), x2.mul(cos).add(x1.mul(sin))], a);
}

/** Options of {@link attention}. */
export interface AttentionOptions {
  /** Mask keys after each query (aligned at the end when Sk > S); default true. */
  causal?: boolean;
  /**
   * Use the fused kernel (default: whenever the head size is a multiple of 4): scores,
   * mask, softmax and the value product in one pass per row, never writing the S×S matrices;
   * its backward recomputes them from q, k and the saved log-sum-exp. `false` builds the
   * composite graph (matmul, where, softmax, matmul), which also differentiates twice.
   */
  fused?: boolean;
}

/** Longest key sequence the fused kernel loops over (llvmpipe stops loops at 65,535 trips). */
const FUSED_MAX_KEYS = MAX_LOOP_ITERATIONS;

/**
 * Scaled dot-product attention softmax(q·kᵀ/√Dh + mask)·v over q [..., S, Dh] and k, v
 * [..., Sk, Dh] (any leading dims, e.g. [B, H]).
 *
 * @example
 * ```ts
 * const o = mj.nn.attention(q, k, v); // causal, fused: [B, H, S, Dh]
 * ```
 */
export function attention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}): Tensor {
  for (const key of Object.keys(opts)) {
    if (key !== "causal" && key !== "fused") {
      fail("nn.attention", `unknown option ${JSON.stringify(key)}; expected causal, fused`);
    }
  }
  const ok = [q, k, v].every((t) =>
    t instanceof Tensor && t.dtype === "f32" && t.ndim >= 2 && t.ndim === q.ndim
  );
  const r = q.ndim;
  if (
    !ok || k.shape[r - 1] !== q.shape[r - 1] || v.shape.join() !== k.shape.join() ||
    q.shape.slice(0, r - 2).join() !== k.shape.slice(0, r - 2).join()
  ) {
    fail(
      "nn.attention",
      `expected f32 q [..., S, Dh], k and v [..., Sk, Dh] with equal leading dims, got ${
        [q, k, v].map((t) => (t instanceof Tensor ? describe(t) : typeof t)).join(", ")
      }`,
    );
  }
  const causal = opts.causal ?? true;
  const S = q.shape[r - 2], Sk = k.shape[r - 2], Dh = q.shape[r - 1];
  if (causal && Sk < S) {
    fail(
      "nn.attention",
      `causal attention needs at least as many keys as queries, got S ${S} and Sk ${Sk}`,
    );
  }
  const fused = opts.fused ?? (Dh % 4 === 0 && Sk <= FUSED_MAX_KEYS);
  if (fused) {
    if (Dh % 4 !== 0) {
      fail(
        "nn.attention",
        `the fused kernel needs a head size divisible by 4, got ${Dh}; pass { fused: false }`,
      );
    }
    if (Sk > FUSED_MAX_KEYS) {
      fail(
        "nn.attention",
        `the fused kernel handles at most ${FUSED_MAX_KEYS} keys, got ${Sk}; pass { fused: false }`,
      );
    }
    return prim("attention", [q, k, v], { causal, scale: 1 / Math.sqrt(Dh) }).narrow(r - 1, 0, Dh);
  }
  let scores = q.matmul(k.swapAxes(-2, -1)).mul(1 / Math.sqrt(Dh));
  if (causal) {
    const shape = scores.shape;
    const qi = iotaAlong(shape, shape.length - 2).add(Sk - S),
      kj = iotaAlong(shape, shape.length - 1);
    scores = where(kj.le(qi), scores, -Infinity);
  }
  return scores.softmax(-1).matmul(v);
}

/** Options of {@link selfAttention}: the attention's, and the position encoding. */
export interface SelfAttentionOptions extends AttentionOptions {
  /** RoPE in the rotate-half form (default) or no position encoding. */
  rope?: RopeKind;
}

/**
 * Causal multi-head self-attention with RoPE (or none) on x [B, S, d], projections
 * `{ q, k, v, o }`.
 *
 * @example
 * ```ts
 * const y = mj.nn.selfAttention(x, params.layers[0].attn, 4, 10000); // [B, S, d]
 * const noPositions = mj.nn.selfAttention(x, p, 4, 10000, { rope: "none", fused: false });
 * ```
 */
export function selfAttention(
  x: Tensor,
  p: { q: Tensor; k: Tensor; v: Tensor; o: Tensor },
  nHeads: number,
  ropeTheta: number,
  opts: SelfAttentionOptions = {},
): Tensor {
  const { rope: kind = "rotateHalf", ...attnOpts } = opts;
  if (kind !== "rotateHalf" && kind !== "none") {
    fail("nn.selfAttention", `rope must be "rotateHalf" or "none", got ${formatValue(kind)}`);
  }
  const [B, S, d] = x.shape;
  const Dh = d / nHeads;
  const heads = (t: Tensor) => t.reshape([B, S, nHeads, Dh]).permute([0, 2, 1, 3]); // [B, H, S, Dh]
  const position = (t: Tensor) => (kind === "none" ? t : rope(t, ropeTheta));
  const q = position(heads(linear(x, p.q)));
  const k = position(heads(linear(x, p.k)));
  const v = heads(linear(x, p.v));
  const o = attention(q, k, v, { causal: true, ...attnOpts }).permute([0, 2, 1, 3]).reshape([
    B,
    S,
    d,
  ]);
  return linear(o, p.o);
}

/** A dense FFN: SwiGLU `down(silu(gate·x) ⊙ up·x)` or `down(act(up·x))`. */
export function mlp(
  x: Tensor,
  p: { gate?: Tensor; up: Tensor; down: Tensor },
  activation: "swiglu" | "gelu" | "relu",
): Tensor {
  const h = activation === "swiglu"
    ? linear(x, p.gate!).silu().mul(linear(x, p.up))
    : activation === "gelu"
    ? linear(x, p.up).gelu()
    : linear(x, p.up).relu();
  return linear(h, p.down);
}

/**
 * Mean cross-entropy of logits [N, V] against integer targets [N] (from logits: the log-softmax
 * is fused into one row kernel with the target pick).
 *
 * @example
 * ```ts
 * const loss = mj.nn.crossEntropy(logits.reshape([-1, V]), targets.reshape([-1]));
 * ```
 */
export function crossEntropy(logits: Tensor, targets: Tensor): Tensor {
  if (
    logits.ndim !== 2 || targets.ndim !== 1 || targets.shape[0] !== logits.shape[0] ||
    targets.dtype !== "i32"
  ) {
    fail(
      "nn.crossEntropy",
      `expected logits [N, V] and i32 targets [N], got ${describe(logits)} and ${
        describe(targets)
      }`,
    );
  }
  const t = checkIndex(
    "nn.crossEntropy",
    targets,
    logits.shape[1],
    "the classes (the last axis of logits)",
  );
  const picked = gatherTrusted(logits, 1, t.reshape([-1, 1])).reshape([-1]);
  return logits.logsumexp(-1).sub(picked).mean();
}
