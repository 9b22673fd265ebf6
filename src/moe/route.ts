/**
 * Routing: router logits → scores → selection → gate weights and per-expert counts, with a
 * choice of gradient estimator for the selection:
 *  - "topk" (default): the selection is a constant; gradients reach the logits only through the
 *    selected weights (docs/methods.md §1);
 *  - "dense": the same routing; `moe.layer` evaluates every expert for the true dense gradient;
 *  - "default": the same routing; `moe.layer` adds Default MoE's EMA default outputs (§2);
 *  - "sparsemixer" / "sparsemixer-v1": GRIN's SparseMixer-v2 / its predecessor (§5);
 *  - a function: your own estimator (register its backward with mj.customVjp).
 */
import { fail, formatValue } from "../errors.ts";
import { Tensor } from "../tensor.ts";
import { mark, stopGradient } from "../ops/meta.ts";
import { checkIndex, gatherTrusted, oneHot } from "../ops/indexing.ts";
import { constant, describe } from "../ops/prim.ts";
import { checkChoice, checkKeys } from "./options.ts";
import { type SparseMixerNoise, sparseMixerV1, sparseMixerV2 } from "./estimators/sparsemixer.ts";

/** Built-in gradient estimators. */
export const ESTIMATORS = ["topk", "dense", "default", "sparsemixer", "sparsemixer-v1"] as const;
export type EstimatorName = (typeof ESTIMATORS)[number];

/**
 * What a custom estimator receives. The sampling options of `route`/`layer` (`key`, `seed`,
 * `noise`, `jitterEps`) are passed through unchanged (undefined when not given), so a sampling
 * estimator can draw its own randomness: fresh per jitted call from `key`, fixed from `seed`,
 * or injected `noise` for tests. The library does not check `noise`'s shapes for a custom
 * estimator; they mean what the estimator says.
 *
 * @example
 * ```ts
 * // Gumbel-max sampling from the scores, with draws from the step's key.
 * const sampled: mj.moe.EstimatorFn = ({ logits, scores, k, key, seed }) => {
 *   const u = mj.rand(logits.shape, key !== undefined ? { key } : { seed });
 *   const indices = logits.sub(u.neg().add(1).log().neg().log()).topk(k).indices;
 *   return { indices, weights: scores.gather(-1, indices) };
 * };
 * mj.moe.route(logits, { k: 2, estimator: sampled, key: stepKey });
 * ```
 */
export interface EstimatorContext {
  /** [T, N] router logits (differentiable). */
  logits: Tensor;
  /** [T, N] scores (softmax or sigmoid of the logits, differentiable). */
  scores: Tensor;
  /** [T, N] scores plus the selection bias, without gradient: what selection should rank. */
  selection: Tensor;
  k: number;
  training: boolean;
  /** The random key tensor given to route/layer (fresh draws per jitted call), if any. */
  key?: Tensor;
  /** The fixed seed given to route/layer, if any. */
  seed?: number;
  /** Injected draws given to route/layer, if any (e.g. for reproducible tests). */
  noise?: SparseMixerNoise;
  /** The ε given as `jitterEps`, if any (e.g. for a drop rule of your own). */
  jitterEps?: number;
}

/**
 * A custom routing estimator: returns the selected experts and the gate weights, whose backward
 * (usually a mj.customVjp with `estimator: true`) defines the estimator.
 */
export type EstimatorFn = (ctx: EstimatorContext) => { indices: Tensor; weights: Tensor };

export interface RouteOptions {
  /** Experts per token. */
  k: number;
  /** How logits become scores (default softmax). */
  score?: "softmax" | "sigmoid";
  /**
   * Renormalise the k gate weights to sum to 1 (default false), after any estimator (for
   * SparseMixer the weights c·p_D; with k = 1 every weight becomes 1). Default MoE's default
   * term and EMA keep the raw scores π.
   */
  normalize?: boolean;
  /**
   * [N], added for selection only: never to the weights, no gradient. Top-k, "dense" and
   * "default" add it to the scores they rank; the SparseMixer estimators add it to the logits
   * their drop rule, sampling and argmax see (their gates stay the unbiased masked scores).
   */
  bias?: Tensor;
  /** The routing gradient estimator (default "topk"). */
  estimator?: EstimatorName | EstimatorFn;
  /** Training behaviour (sampling, EMA updates); false gives eval routing (default true). */
  training?: boolean;
  /** SparseMixer: ε of the drop rule (default 0.01 for v2, 0.1 for v1). */
  jitterEps?: number;
  /** SparseMixer: injected draws, exponential [k, T, N] and uniform [k, T]. */
  noise?: SparseMixerNoise;
  /**
   * Random key tensor (fresh draws per jitted call) or a fixed seed, for sampling estimators
   * (also handed to a custom estimator, with `noise` and `jitterEps`).
   */
  key?: Tensor;
  seed?: number;
}

export interface Routing {
  /** [T, k] i32: selected experts (top-k: by descending biased score, ties to the lower index). */
  indices: Tensor;
  /** [T, k] f32: gate weights (the selected scores, renormalised if asked; estimator-specific). */
  weights: Tensor;
  /** [T, N] f32: all scores (marked "moe.scores" for balancers). */
  scores: Tensor;
  /** [N] i32: how many (token, slot) pairs each expert received. */
  counts: Tensor;
  /** [T, k] f32: SparseMixer's gate multipliers c (ones for the other estimators). */
  scale: Tensor;
}

export const ROUTE_KEYS = [
  "k",
  "score",
  "normalize",
  "bias",
  "estimator",
  "training",
  "jitterEps",
  "noise",
  "key",
  "seed",
] as const;

export function checkLogits(op: string, logits: Tensor): [number, number] {
  if (!(logits instanceof Tensor)) {
    fail(op, `expected router logits as a Tensor, got ${typeof logits}`);
  }
  if (logits.ndim !== 2 || logits.dtype !== "f32") {
    fail(op, `expected router logits f32[T, N], got ${describe(logits)}`);
  }
  return [logits.shape[0], logits.shape[1]];
}

export function checkK(op: string, k: unknown, N: number): number {
  if (typeof k !== "number" || !Number.isInteger(k) || k < 1 || k > N) {
    fail(op, `k must be an integer in 1..${N} (the number of experts), got ${JSON.stringify(k)}`);
  }
  return k;
}

/** The estimator named or given in options, checked. */
export function estimatorOf(op: string, e: unknown): EstimatorName | EstimatorFn {
  if (typeof e === "function") return e as EstimatorFn;
  return checkChoice(op, "estimator", e, ESTIMATORS, "topk");
}

/**
 * Routes tokens to experts.
 *
 * @example
 * ```ts
 * const { indices, weights, counts } = mj.moe.route(x.matmul(wRouter.transpose()), { k: 2 });
 * const grin = mj.moe.route(logits, { k: 2, estimator: "sparsemixer", key: stepKey });
 * ```
 */
export function route(logits: Tensor, opts: RouteOptions): Routing {
  checkKeys("moe.route", opts, ROUTE_KEYS);
  const [T, N] = checkLogits("moe.route", logits);
  const k = checkK("moe.route", opts.k, N);
  const score = checkChoice("moe.route", "score", opts.score, ["softmax", "sigmoid"], "softmax");
  const estimator = estimatorOf("moe.route", opts.estimator);
  if (opts.normalize !== undefined && typeof opts.normalize !== "boolean") {
    fail("moe.route", `normalize must be a boolean, got ${formatValue(opts.normalize)}`);
  }
  if (opts.training !== undefined && typeof opts.training !== "boolean") {
    fail("moe.route", `training must be a boolean, got ${formatValue(opts.training)}`);
  }
  if (opts.bias !== undefined) {
    if (
      !(opts.bias instanceof Tensor) || opts.bias.dtype !== "f32" || opts.bias.ndim !== 1 ||
      opts.bias.shape[0] !== N
    ) {
      fail(
        "moe.route",
        `bias must be f32[${N}] (one per expert), got ${
          opts.bias instanceof Tensor ? describe(opts.bias) : typeof opts.bias
        }`,
      );
    }
  }
  const sampling = estimator === "sparsemixer" || estimator === "sparsemixer-v1";
  for (const key of ["jitterEps", "noise", "key", "seed"] as const) {
    if (opts[key] !== undefined && !sampling && typeof estimator !== "function") {
      fail(
        "moe.route",
        `option ${key} applies to the sparsemixer estimators, not ${formatValue(estimator)}`,
      );
    }
  }
  const training = opts.training ?? true;
  const marked = mark(logits, "moe.logits");
  const scores = routerScores(logits, score);
  let indices: Tensor, weights: Tensor, scale: Tensor;
  if (sampling) {
    const r = (estimator === "sparsemixer" ? sparseMixerV2 : sparseMixerV1)(marked, {
      k,
      jitterEps: opts.jitterEps,
      training,
      noise: opts.noise,
      key: opts.key,
      seed: opts.seed,
      bias: opts.bias,
      score,
    });
    ({ indices, weights, scale } = r);
  } else {
    const selection = stopGradient(opts.bias ? scores.add(stopGradient(opts.bias)) : scores);
    if (typeof estimator === "function") {
      const r = estimator({
        logits: marked,
        scores,
        selection,
        k,
        training,
        key: opts.key,
        seed: opts.seed,
        noise: opts.noise,
        jitterEps: opts.jitterEps,
      });
      if (!r || !(r.indices instanceof Tensor) || !(r.weights instanceof Tensor)) {
        fail("moe.route", "a custom estimator must return { indices, weights } tensors");
      }
      if (r.indices.dtype !== "i32" || r.indices.shape.join() !== [T, k].join()) {
        fail(
          "moe.route",
          `the custom estimator's indices must be i32[${T}, ${k}], got ${describe(r.indices)}`,
        );
      }
      if (r.weights.dtype !== "f32" || r.weights.shape.join() !== [T, k].join()) {
        fail(
          "moe.route",
          `the custom estimator's weights must be f32[${T}, ${k}], got ${describe(r.weights)}`,
        );
      }
      indices = checkIndex(
        "moe.route",
        r.indices,
        N,
        "the custom estimator's experts",
      );
      weights = r.weights;
    } else {
      indices = selection.topk(k).indices;
      weights = gatherTrusted(scores, 1, indices);
    }
    scale = constant(1, [T, k], "f32");
  }
  if (opts.normalize) weights = weights.div(weights.sum(-1, true));
  return { indices, weights, scores, counts: expertCounts(indices, N), scale };
}

/** The router's scores, marked for balancers (the same nodes route() builds). */
export function routerScores(logits: Tensor, score: "softmax" | "sigmoid" = "softmax"): Tensor {
  const marked = mark(logits, "moe.logits");
  return mark(score === "softmax" ? marked.softmax(-1) : marked.sigmoid(), "moe.scores");
}

/** [N] i32 counts of each expert among `indices` (any shape): a histogram without atomics. */
export function expertCounts(indices: Tensor, N: number): Tensor {
  return oneHot(indices.reshape([indices.size]), N, "i32").sum(0);
}
