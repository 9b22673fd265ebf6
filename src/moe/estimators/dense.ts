/**
 * The dense estimator (docs/methods.md §6): top-k routing forward, but the gradient of the dense mixture
 * Σ_i π_i·E_i(x) — every expert runs on every token for the backward (expensive; a reference for
 * what sparse estimators approximate).
 */
import { stopGradient } from "../../ops/meta.ts";
import { allExperts } from "../experts.ts";
import type { Estimator } from "../estimator.ts";
import { topKRouting } from "./topk.ts";

/** `estimator: "dense"`. */
export const dense: Estimator = {
  name: "dense",
  description:
    "top-k forward with the gradient of the dense mixture Σ_i π_i·E_i(x) (every expert runs for the backward)",
  trustedIndices: true,
  route: topKRouting,
  layer({ x, params, routing, y, activation }) {
    // Forward equals top-k; the gradient is that of the dense mixture Σ_i π_i E_i(x).
    const all = allExperts(x, params, activation); // [N, T, d]
    const mixture = all.mul(routing.scores.transpose().unsqueeze(2)).sum(0);
    return { y: mixture.sub(stopGradient(mixture)).add(stopGradient(y)) };
  },
  hfFamily: "mixtral",
  inference: "softmax → top-k",
  megatron: () => ({
    missing: 'the "dense" router-gradient estimator',
    detail:
      "This run evaluated every expert for the router's gradient; Megatron trains with the top-k gradient (same forward)",
  }),
};
