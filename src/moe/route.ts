/**
 * Routing: router logits → scores → top-k selection → gate weights and per-expert counts.
 * The selection is a constant for autodiff (the conventional top-k gradient, algorithms.md §1):
 * gradients reach the logits only through the selected weights.
 */
import { fail } from "../errors.ts";
import { Tensor } from "../tensor.ts";
import { mark, stopGradient } from "../ops/meta.ts";
import { oneHot } from "../ops/indexing.ts";
import { describe } from "../ops/prim.ts";
import { checkChoice, checkKeys } from "./options.ts";

/** Gradient estimators for the routing decision. */
export const ESTIMATORS = ["topk", "dense"] as const;
export type EstimatorName = (typeof ESTIMATORS)[number];

export interface RouteOptions {
  /** Experts per token. */
  k: number;
  /** How logits become scores (default softmax). */
  score?: "softmax" | "sigmoid";
  /** Renormalise the k selected weights to sum to 1 (default false). */
  normalize?: boolean;
  /** [N], added to the scores for selection only: never to the weights, no gradient. */
  bias?: Tensor;
  /** The routing gradient estimator (default "topk"). */
  estimator?: EstimatorName;
}

export interface Routing {
  /** [T, k] i32: selected experts, by descending biased score (ties to the lower index). */
  indices: Tensor;
  /** [T, k] f32: gate weights (the selected scores, renormalised if asked). */
  weights: Tensor;
  /** [T, N] f32: all scores. */
  scores: Tensor;
  /** [N] i32: how many (token, slot) pairs each expert received. */
  counts: Tensor;
}

export const ROUTE_KEYS = ["k", "score", "normalize", "bias", "estimator"] as const;

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

/**
 * Routes tokens to experts.
 *
 * @example
 * ```ts
 * const { indices, weights, counts } = mj.moe.route(x.matmul(wRouter.transpose()), { k: 2 });
 * ```
 */
export function route(logits: Tensor, opts: RouteOptions): Routing {
  checkKeys("moe.route", opts, ROUTE_KEYS);
  const [, N] = checkLogits("moe.route", logits);
  const k = checkK("moe.route", opts.k, N);
  const score = checkChoice("moe.route", "score", opts.score, ["softmax", "sigmoid"], "softmax");
  checkChoice("moe.route", "estimator", opts.estimator, ESTIMATORS, "topk");
  if (opts.normalize !== undefined && typeof opts.normalize !== "boolean") {
    fail("moe.route", `normalize must be a boolean, got ${JSON.stringify(opts.normalize)}`);
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
  const marked = mark(logits, "moe.logits");
  const scores = mark(score === "softmax" ? marked.softmax(-1) : marked.sigmoid(), "moe.scores");
  const selection = stopGradient(opts.bias ? scores.add(stopGradient(opts.bias)) : scores);
  const indices = selection.topk(k).indices;
  let weights = scores.gather(-1, indices);
  if (opts.normalize) weights = weights.div(weights.sum(-1, true));
  return { indices, weights, scores, counts: expertCounts(indices, N) };
}

/** [N] i32 counts of each expert among `indices` (any shape): a histogram without atomics. */
export function expertCounts(indices: Tensor, N: number): Tensor {
  return oneHot(indices.reshape([indices.size]), N, "i32").sum(0);
}
