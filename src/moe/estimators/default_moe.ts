/**
 * Default MoE (Panda et al., "Dense Backpropagation Improves Training for Sparse MoE";
 * docs/methods.md §2): every expert keeps an EMA "default" output ê_i. In training the EMA is
 * updated first, from the outputs of the experts that ran, then the output gains
 * Σ_{i∉A_t} π_{t,i} ê_i. ê is a constant for autodiff, so the router receives the dense
 * gradient ⟨∂L/∂y_t, E_i(x_t) or ê_i⟩ while experts keep their sparse gradient.
 */
import { fail, formatValue } from "../../errors.ts";
import type { Tensor } from "../../tensor.ts";
import { customVjp } from "../../autodiff/custom.ts";
import { stopGradient } from "../../ops/meta.ts";
import { gatherTrusted, oneHot, takeRowsTrusted } from "../../ops/indexing.ts";
import { constant, describe } from "../../ops/prim.ts";
import { where } from "../../ops/elementwise.ts";
import type { Estimator } from "../estimator.ts";
import { topKRouting } from "./topk.ts";

export interface DefaultOptions {
  /** EMA decay β (default 0.9). */
  beta?: number;
  /**
   * What the EMA averages over the tokens routed to each expert: "mean" of E_i(x) (default),
   * "scoredMean" mean of π·E_i(x), or "scoredWeighted" Σπ·E_i(x) / Σπ (the two readings of the
   * paper's router-score-weighted update).
   */
  ema?: "mean" | "scoredMean" | "scoredWeighted";
  /** "forward" (the method) or "backwardOnly" (the ablation: plain top-k forward). */
  mode?: "forward" | "backwardOnly";
  /** Add the defaults at eval too (default false: eval is plain top-k). */
  evalDefaults?: boolean;
}

/** Default MoE's options with their defaults filled in. */
export interface DefaultConfig {
  beta: number;
  ema: "mean" | "scoredMean" | "scoredWeighted";
  mode: "forward" | "backwardOnly";
  evalDefaults: boolean;
}

/** "must be one of …, got …" for a value outside `choices`. */
function oneOf(choices: readonly string[]) {
  return (v: unknown) =>
    choices.includes(v as string)
      ? undefined
      : `must be one of ${choices.map((c) => formatValue(c)).join(", ")}, got ${formatValue(v)}`;
}

/**
 * Σ_{i∉A_t} π_{t,i} ê_i with ê constant: the router gets ∂L/∂π_{t,i} = ⟨g_t, ê_i⟩ for the
 * unselected experts, and nothing reaches the experts through ê. In "backwardOnly" mode the
 * forward value is zero and only the gradient remains.
 */
const defaultTerm = customVjp({
  name: "moe.default.term",
  fwd: (pi: Tensor, unselected: Tensor, ehat: Tensor, mode: "forward" | "backwardOnly") => {
    return mode === "forward"
      ? pi.mul(unselected).matmul(ehat)
      : constant(0, [pi.shape[0], ehat.shape[1]], "f32");
  },
  bwd: (_s, g, [_pi, unselected, ehat]) => [
    (g as Tensor).matmul((ehat as Tensor).transpose()).mul(unselected as Tensor),
    null,
    null,
    null,
  ],
  estimator: true,
});

export interface DefaultInputs {
  /** [T, N] router scores π (differentiable). */
  scores: Tensor;
  /** [T, k] selected experts. */
  indices: Tensor;
  /** [T, k, d] outputs of the selected experts, unweighted (the EMA's samples). */
  outputs: Tensor;
  /** [N, d] carried defaults. */
  ehat: Tensor;
  training: boolean;
  config: DefaultConfig;
}

/** The EMA update and the default term: { term: [T, d] or null, ehat: updated [N, d] }. */
export function defaultMoe(a: DefaultInputs): { term: Tensor | null; ehat: Tensor } {
  const { scores, indices, config } = a;
  const [T, N] = scores.shape;
  const [, k, d] = a.outputs.shape;
  if (a.ehat.dtype !== "f32" || a.ehat.shape.join() !== [N, d].join()) {
    fail(
      "moe.layer",
      `state.ehat must be f32[${N}, ${d}] (one default vector per expert), got ${describe(a.ehat)}`,
    );
  }
  const hot = oneHot(indices.reshape([T * k]), N); // [T·k, N]
  const unselected = constant(1, [T, N], "f32").sub(hot.reshape([T, k, N]).sum(1).minimum(1));
  let ehat = stopGradient(a.ehat);
  if (a.training) {
    const outs = stopGradient(a.outputs).reshape([T * k, d]);
    const count = hot.sum(0); // [N]
    const piSel = gatherTrusted(stopGradient(scores), 1, indices).reshape([T * k, 1]);
    const samples = config.ema === "mean" ? outs : outs.mul(piSel);
    const total = hot.transpose().matmul(samples); // [N, d]
    const norm = config.ema === "scoredWeighted"
      ? hot.transpose().matmul(piSel) // [N, 1]: Σ π over the expert's tokens
      : count.reshape([N, 1]);
    const mean = total.div(norm.maximum(1e-30));
    const updated = ehat.mul(config.beta).add(mean.mul(1 - config.beta));
    // An expert that received no token keeps its vector.
    ehat = stopGradient(where(count.gt(0).reshape([N, 1]).broadcastTo([N, d]), updated, ehat));
  }
  const use = a.training || config.evalDefaults;
  const term = use
    ? (defaultTerm(scores, unselected, ehat, a.training ? config.mode : "forward") as Tensor)
    : null;
  return { term, ehat };
}

/** `estimator: "default"` (options as `{ kind: "default", beta, ema, mode, evalDefaults }`). */
export const defaultEstimator: Estimator<DefaultConfig> = {
  name: "default",
  description:
    "Default MoE (Panda et al. 2025): top-k forward; unselected experts contribute their EMA default output to the router's gradient",
  trustedIndices: true,
  options: {
    beta: {
      default: 0.9,
      doc: "EMA decay β of the default outputs",
      check: (v) =>
        typeof v === "number" && v >= 0 && v <= 1
          ? undefined
          : `must be a number in [0, 1], got ${formatValue(v)}`,
    },
    ema: {
      default: "mean",
      doc:
        "what the EMA averages: mean of E_i(x), scoredMean of π·E_i(x), scoredWeighted Σπ·E_i(x)/Σπ",
      check: oneOf(["mean", "scoredMean", "scoredWeighted"]),
    },
    mode: {
      default: "forward",
      doc: "forward (the method) or backwardOnly (the ablation: plain top-k forward)",
      check: oneOf(["forward", "backwardOnly"]),
    },
    evalDefaults: {
      default: false,
      doc: "add the defaults at evaluation too",
      check: (v) => typeof v === "boolean" ? undefined : `must be a boolean, got ${formatValue(v)}`,
    },
  },
  shorthands: { default: { appliesTo: 'configures estimator "default"' } },
  state: { ehat: ({ N, d }) => constant(0, [N, d], "f32") },
  route: topKRouting,
  layer({ routing, table, expertOutputs, y, training, state, x }, config) {
    const [T, d] = x.shape;
    const outputs = takeRowsTrusted(expertOutputs, table.destRow).reshape([
      T,
      routing.indices.shape[1],
      d,
    ]);
    const dm = defaultMoe({
      scores: routing.scores,
      indices: routing.indices,
      outputs,
      ehat: state.ehat,
      training,
      config,
    });
    return { y: dm.term ? y.add(dm.term) : y, state: { ehat: dm.ehat } };
  },
  hfFamily: "mixtral",
  inference: "softmax → top-k",
  leavesHfFamily: (o) =>
    o.evalDefaults
      ? "estimatorOptions.evalDefaults true: moejit adds the unselected experts' EMA default outputs at inference too, which the family's MoE block does not compute"
      : undefined,
  megatron: () => ({
    missing: "Default MoE",
    detail:
      "The router's gradient used EMA default outputs of the experts a token did not use; Megatron trains with the plain top-k gradient (same forward at inference)",
  }),
};
