/**
 * Load balancers as graph passes over a MoE layer's router (docs/methods.md §4). A balancer finds
 * the router's nodes by their marks ("moe.logits", "moe.scores"), then contributes any of:
 *  - a selection shift [N] added to the scores before top-k (never to the gates, no gradient):
 *    loss-free's bias, BIP's dual prices −q;
 *  - loss outputs: `load_balancing_loss` (auxiliary loss), `z_loss`;
 *  - state carried to the next step: `lossFreeBias`, `bipQ`.
 * Balancers are plain values in a layer's options, so the chosen set is part of the traced graph
 * and hence of a compiled step's signature. Nothing goes through global side channels.
 */
import { fail } from "../errors.ts";
import type { Node } from "../ir/node.ts";
import { toposort } from "../ir/graph.ts";
import type { OpArgs } from "../ir/ops.ts";
import { Tensor } from "../tensor.ts";
import { stopGradient } from "../ops/meta.ts";
import { oneHot } from "../ops/indexing.ts";
import { constant, describe } from "../ops/prim.ts";
import { kthLargest } from "../ops/select.ts";

/** What a balancer sees of one MoE layer. */
export interface BalanceContext {
  /** Tensors of the layer's routing; balancers find the marked router nodes in their graph. */
  routing: { scores: Tensor; weights: Tensor; indices: Tensor; counts: Tensor };
  T: number;
  N: number;
  k: number;
  /** The layer's incoming state. */
  state: Record<string, Tensor>;
  /**
   * Training (default) or inference. At inference balancers must not look across tokens of the
   * batch (that would break causality: a token's routing would depend on later tokens), so they
   * route with the state learned in training and update nothing.
   */
  training?: boolean;
}

export interface Balancer {
  /** The balancer's name and settings (they shape the graph, hence the compiled step). */
  readonly kind: "auxLoss" | "zLoss" | "lossFree" | "bip";
  readonly config: Readonly<Record<string, unknown>>;
  /** A shift [N] of the selection scores, computed from the selection scores so far [T, N]. */
  selectionShift?(
    scores: Tensor,
    ctx: Omit<BalanceContext, "routing">,
  ): { shift: Tensor; state?: Record<string, Tensor> };
  /** After routing: loss terms and state updates. */
  finish?(ctx: BalanceContext): { losses?: Record<string, Tensor>; state?: Record<string, Tensor> };
}

/**
 * The node marked `label` in the graph of `from` (the nearest one), as a tensor.
 *
 * @example
 * ```ts
 * const logits = mj.balance.findMarked([ctx.routing.scores], "moe.logits");
 * ```
 */
export function findMarked(from: readonly Tensor[], label: string): Tensor {
  const hits = toposort(from.map((t) => t.node)).filter((n: Node) =>
    n.op === "mark" && (n.arg as OpArgs["mark"]).label === label
  );
  if (!hits.length) {
    fail("balance", `no router node marked ${JSON.stringify(label)} in the layer's graph`);
  }
  return new Tensor(hits[hits.length - 1].src[0]);
}

function checkConfig(
  op: string,
  opts: object | undefined,
  known: string[],
): Record<string, unknown> {
  const o = (opts ?? {}) as Record<string, unknown>;
  if (typeof o !== "object") fail(op, `expected an options object, got ${typeof o}`);
  for (const k of Object.keys(o)) {
    if (!known.includes(k)) {
      fail(op, `unknown option ${JSON.stringify(k)}; expected one of ${known.join(", ")}`);
    }
  }
  return o;
}

function positive(op: string, name: string, v: unknown, dflt: number, allowZero = true): number {
  if (v === undefined) return dflt;
  if (typeof v !== "number" || !Number.isFinite(v) || v < 0 || (!allowZero && v === 0)) {
    fail(
      op,
      `${name} must be a ${allowZero ? "non-negative" : "positive"} number, got ${
        JSON.stringify(v)
      }`,
    );
  }
  return v;
}

export interface AuxLossOptions {
  /** Coefficient α (default 0.01). */
  alpha?: number;
  /** "global" (all tokens of the batch, default) or "sequence" (per sequence, then averaged). */
  scope?: "global" | "sequence";
  /** Tokens per sequence, for scope "sequence". */
  seqLen?: number;
  /** Which probabilities P uses: the route's scores (default) or the plain softmax of the logits. */
  score?: "scores" | "softmax";
  /**
   * "unified" (default): α·N·Σ_i (c_i/(T·K))·P_i, equal to α at perfect balance (Switch,
   * MegaBlocks, Megatron, Loss-Free, MiniMind). "hf": Hugging Face's K× larger form.
   */
  convention?: "unified" | "hf";
}

/**
 * The auxiliary load-balancing loss ("Loss-Controlled"): α·N·Σ_i f_i·P_i with f_i = c_i/(T·K)
 * (no gradient) and P_i the mean score of expert i. Its gradient reaches the scores as α·f_i/T.
 *
 * @example
 * ```ts
 * const r = mj.moe.layer(x, params, { k: 2, balance: [mj.balance.auxLoss({ alpha: 0.01 })] });
 * loss = loss.add(r.losses.load_balancing_loss);
 * ```
 */
export function auxLoss(opts: AuxLossOptions = {}): Balancer {
  const o = checkConfig("balance.auxLoss", opts, [
    "alpha",
    "scope",
    "seqLen",
    "score",
    "convention",
  ]);
  const alpha = positive("balance.auxLoss", "alpha", o.alpha, 0.01);
  const scope = (o.scope ?? "global") as string;
  if (scope !== "global" && scope !== "sequence") {
    fail("balance.auxLoss", `scope must be "global" or "sequence", got ${JSON.stringify(scope)}`);
  }
  const convention = (o.convention ?? "unified") as string;
  if (convention !== "unified" && convention !== "hf") {
    fail(
      "balance.auxLoss",
      `convention must be "unified" or "hf", got ${JSON.stringify(convention)}`,
    );
  }
  const score = (o.score ?? "scores") as string;
  if (score !== "scores" && score !== "softmax") {
    fail("balance.auxLoss", `score must be "scores" or "softmax", got ${JSON.stringify(score)}`);
  }
  const seqLen = o.seqLen as number | undefined;
  if (scope === "sequence" && (!Number.isInteger(seqLen) || seqLen! < 1)) {
    fail(
      "balance.auxLoss",
      `scope "sequence" needs seqLen, a positive integer (tokens per sequence), got ${
        JSON.stringify(seqLen)
      }`,
    );
  }
  return {
    kind: "auxLoss",
    config: { alpha, scope, seqLen, score, convention },
    finish(ctx) {
      const { T, N, k, routing } = ctx;
      const probs = score === "softmax"
        ? findMarked([routing.scores, routing.weights], "moe.logits").softmax(-1)
        : findMarked([routing.scores], "moe.scores");
      const S = scope === "sequence" ? seqLen! : T;
      if (T % S !== 0) {
        fail("balance.auxLoss", `T = ${T} tokens is not a whole number of sequences of ${S}`);
      }
      const B = T / S;
      const hot = oneHot(stopGradient(routing.indices).reshape([B, S * k]), N); // [B, S·k, N]
      const f = hot.sum(1).div(convention === "hf" ? S : S * k); // [B, N], no gradient
      const P = probs.reshape([B, S, N]).mean(1); // [B, N]
      return { losses: { load_balancing_loss: f.mul(P).sum(1).mean().mul(alpha * N) } };
    },
  };
}

export interface ZLossOptions {
  /** Coefficient β (default 1e-3). */
  beta?: number;
}

/**
 * The router z-loss: β·mean_t (logsumexp_j z_{t,j})² (ST-MoE), discouraging large logits.
 *
 * @example
 * ```ts
 * const r = mj.moe.layer(x, params, { k: 2, balance: [mj.balance.zLoss({ beta: 1e-3 })] });
 * loss = loss.add(r.losses.z_loss);
 * ```
 */
export function zLoss(opts: ZLossOptions = {}): Balancer {
  const o = checkConfig("balance.zLoss", opts, ["beta"]);
  const beta = positive("balance.zLoss", "beta", o.beta, 0.001);
  return {
    kind: "zLoss",
    config: { beta },
    finish(ctx) {
      const logits = findMarked([ctx.routing.scores, ctx.routing.weights], "moe.logits");
      return { losses: { z_loss: logits.logsumexp(-1).square().mean().mul(beta) } };
    },
  };
}

export interface LossFreeOptions {
  /** Update rate u (default 1e-3). */
  rate?: number;
  /** b ← b + u·sign(e) ("sign", default) or b ← b + u·e ("linear"). */
  rule?: "sign" | "linear";
  /**
   * For "linear": e as the load violation relative to the mean load, (c̄ − c)/c̄ (default,
   * [ASSUMED]: the paper leaves it open), or as raw counts c̄ − c.
   */
  violation?: "relative" | "raw";
}

/**
 * Loss-free balancing (DeepSeek): a per-expert bias b, added to the scores for selection only,
 * updated after each step from that step's loads: b ← b + u·sign(c̄ − c). The update is causal
 * (it takes effect from the next step) and is carried in `state.lossFreeBias`.
 *
 * @example
 * ```ts
 * const r = mj.moe.layer(x, params, { k: 2, balance: [mj.balance.lossFree({ rate: 1e-3 })], state });
 * state = r.state; // { lossFreeBias }: pass it to the next step
 * ```
 */
export function lossFree(opts: LossFreeOptions = {}): Balancer {
  const o = checkConfig("balance.lossFree", opts, ["rate", "rule", "violation"]);
  const rate = positive("balance.lossFree", "rate", o.rate, 1e-3);
  const rule = (o.rule ?? "sign") as string;
  if (rule !== "sign" && rule !== "linear") {
    fail("balance.lossFree", `rule must be "sign" or "linear", got ${JSON.stringify(rule)}`);
  }
  const violation = (o.violation ?? "relative") as string;
  if (violation !== "relative" && violation !== "raw") {
    fail(
      "balance.lossFree",
      `violation must be "relative" or "raw", got ${JSON.stringify(violation)}`,
    );
  }
  const biasOf = (ctx: { N: number; state: Record<string, Tensor> }) => {
    const b = ctx.state.lossFreeBias;
    if (b === undefined) return constant(0, [ctx.N], "f32");
    if (!(b instanceof Tensor) || b.shape.join() !== String(ctx.N)) {
      fail(
        "balance.lossFree",
        `state.lossFreeBias must be f32[${ctx.N}], got ${
          b instanceof Tensor ? describe(b) : typeof b
        }`,
      );
    }
    return b;
  };
  return {
    kind: "lossFree",
    config: { rate, rule, violation },
    selectionShift: (_scores, ctx) => ({ shift: stopGradient(biasOf(ctx)) }),
    finish(ctx) {
      const mean = (ctx.T * ctx.k) / ctx.N;
      const e = constant(mean, [ctx.N], "f32").sub(ctx.routing.counts.cast("f32"));
      const step = rule === "sign" ? e.sign() : violation === "relative" ? e.div(mean) : e;
      return { state: { lossFreeBias: stopGradient(biasOf(ctx).add(step.mul(rate))) } };
    },
  };
}

export interface BipOptions {
  /** Alternating dual updates per step (T in the paper; default 4). */
  iters?: number;
  /** Expert capacity (kn/m); default ceil(T·k/N) — the rounding is [ASSUMED]. */
  cap?: number | "ceil" | "floor";
}

/**
 * BIP-based balancing (docs/methods.md §4.4, reconstructed from the LP dual): per-expert prices
 * q ≥ 0 carried across steps; each step runs `iters` alternating updates
 *   p_i = max(0, (k+1)-th largest of {s_ij − q_j}_j),  q_j = max(0, (cap+1)-th largest of {s_ij − p_i}_i),
 * then routes by top-k of s − q (the gates stay s). The column selection over all tokens is a
 * radix select (mj.kthLargest), so it scales to 65,536 tokens.
 *
 * @example
 * ```ts
 * const r = mj.moe.layer(x, params, { k: 2, balance: [mj.balance.bip({ iters: 4, cap: "floor" })], state });
 * state = r.state; // { bipQ }: pass it to the next step
 * ```
 */
export function bip(opts: BipOptions = {}): Balancer {
  const o = checkConfig("balance.bip", opts, ["iters", "cap"]);
  const iters = o.iters ?? 4;
  if (!Number.isInteger(iters) || (iters as number) < 1) {
    fail("balance.bip", `iters must be a positive integer, got ${JSON.stringify(iters)}`);
  }
  const capOpt = o.cap ?? "ceil";
  if (
    !(capOpt === "ceil" || capOpt === "floor" ||
      (Number.isInteger(capOpt) && (capOpt as number) >= 0))
  ) {
    fail(
      "balance.bip",
      `cap must be a non-negative integer, "ceil" or "floor", got ${JSON.stringify(capOpt)}`,
    );
  }
  return {
    kind: "bip",
    config: { iters, cap: capOpt },
    selectionShift(scores, ctx) {
      const { T, N, k } = ctx;
      const cap = typeof capOpt === "number"
        ? capOpt
        : (capOpt === "ceil" ? Math.ceil : Math.floor)((T * k) / N);
      let q = ctx.state.bipQ ?? constant(0, [N], "f32");
      if (!(q instanceof Tensor) || q.shape.join() !== String(N)) {
        fail("balance.bip", `state.bipQ must be f32[${N}]`);
      }
      // Inference routes with the prices training left: solving them on the batch would make a
      // token's expert depend on the tokens after it.
      if (ctx.training === false) return { shift: stopGradient(q).neg() };
      const s = stopGradient(scores);
      for (let it = 0; it < (iters as number); it++) {
        const sq = s.sub(q);
        const p = k + 1 <= N
          ? sq.topk(k + 1).values.slice([null, k]).maximum(0)
          : constant(0, [T], "f32");
        q = kthLargest(s.sub(p.reshape([T, 1])), cap + 1, 0).maximum(0);
      }
      q = stopGradient(q);
      return { shift: q.neg(), state: { bipQ: q } };
    },
  };
}
