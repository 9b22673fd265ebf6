/**
 * Top-k routing (docs/methods.md §1), the estimator every other is measured against: each token takes the k experts
 * with the largest (biased) scores, its gates are their scores, and the router's gradient reaches
 * the logits through those k gates only — the selection itself is a constant.
 */
import { gatherTrusted } from "../../ops/indexing.ts";
import type { Estimator, EstimatorContext, EstimatorRouting } from "../estimator.ts";

/**
 * The top-k selection of `ctx.selection` with the selected scores as gates (ties go to the lower
 * expert): the routing of "topk", "dense" and "default".
 */
export function topKRouting(ctx: EstimatorContext): EstimatorRouting {
  const indices = ctx.selection.topk(ctx.topK).indices;
  return { indices, weights: gatherTrusted(ctx.scores, 1, indices) };
}

/** `estimator: "topk"`. */
export const topk: Estimator = {
  name: "topk",
  description:
    "top-k routing: the gates are the selected scores; the router's gradient flows through them only",
  trustedIndices: true,
  route: topKRouting,
  hfFamily: "mixtral",
  inference: "softmax → top-k",
  megatron: () => ({ same: "router gradient: top-k (the selected weights only), Megatron's own" }),
};
