/**
 * What routing produces, and the router nodes every estimator, balancer and metric shares: the
 * logits and scores are marked ("moe.logits", "moe.scores") so that a balancer or a metric finds
 * them in the graph of any routing result, whoever built the router.
 */
import { fail } from "../errors.ts";
import type { Node } from "../ir/node.ts";
import { toposort } from "../ir/graph.ts";
import type { OpArgs } from "../ir/ops.ts";
import { Tensor } from "../tensor.ts";
import { mark } from "../ops/meta.ts";
import { oneHot } from "../ops/indexing.ts";

/** How router logits become scores. */
export type ScoreFunction = "softmax" | "sigmoid";

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

/**
 * The router's scores, marked for balancers and metrics (the same nodes `moe.route` builds).
 *
 * @example
 * ```ts
 * const scores = mj.moe.routerScores(x.matmul(router.transpose()), "softmax"); // [T, N]
 * ```
 */
export function routerScores(logits: Tensor, score: ScoreFunction = "softmax"): Tensor {
  const marked = mark(logits, "moe.logits");
  return mark(score === "softmax" ? marked.softmax(-1) : marked.sigmoid(), "moe.scores");
}

/**
 * [N] i32 counts of each expert among `indices` (any shape): a histogram without atomics.
 *
 * @example
 * ```ts
 * const counts = mj.moe.expertCounts(indices, 8); // [8] i32
 * ```
 */
export function expertCounts(indices: Tensor, N: number): Tensor {
  return oneHot(indices.reshape([indices.size]), N, "i32").sum(0);
}

/**
 * The node marked `label` ("moe.logits", "moe.scores") in the graph of `from` (the nearest one),
 * as a tensor: how a balancer or a metric finds the router behind a routing result.
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
