/**
 * The auxiliary load-balancing loss ("Loss-Controlled"; Switch Transformer, GShard; docs/methods.md
 * §4.1): a loss that
 * pushes the router's mean scores toward the experts that receive few tokens.
 */
import { fail } from "../../errors.ts";
import { stopGradient } from "../../ops/meta.ts";
import { oneHot } from "../../ops/indexing.ts";
import { checkOptions, nonNegative } from "../options.ts";
import { findMarked } from "../routing.ts";
import type { Balancer, BalancerKind } from "../balancer.ts";

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
 * The auxiliary load-balancing loss: α·N·Σ_i f_i·P_i with f_i = c_i/(T·K) (no gradient) and P_i
 * the mean score of expert i, as `losses.load_balancing_loss`. Its gradient reaches the scores as
 * α·f_i/T.
 *
 * @example
 * ```ts
 * const r = mj.moe.layer(x, params, { topK: 2, balance: [mj.balance.auxLoss({ alpha: 0.01 })] });
 * loss = loss.add(r.losses.load_balancing_loss);
 * ```
 */
export function auxLoss(opts: AuxLossOptions = {}): Balancer {
  const op = "balance.auxLoss";
  const o = checkOptions(op, opts, ["alpha", "scope", "seqLen", "score", "convention"]);
  const alpha = nonNegative(op, "alpha", o.alpha, 0.01);
  const scope = (o.scope ?? "global") as string;
  if (scope !== "global" && scope !== "sequence") {
    fail(op, `scope must be "global" or "sequence", got ${JSON.stringify(scope)}`);
  }
  const convention = (o.convention ?? "unified") as string;
  if (convention !== "unified" && convention !== "hf") {
    fail(op, `convention must be "unified" or "hf", got ${JSON.stringify(convention)}`);
  }
  const score = (o.score ?? "scores") as string;
  if (score !== "scores" && score !== "softmax") {
    fail(op, `score must be "scores" or "softmax", got ${JSON.stringify(score)}`);
  }
  const seqLen = o.seqLen as number | undefined;
  if (scope === "sequence" && (!Number.isInteger(seqLen) || seqLen! < 1)) {
    fail(
      op,
      `scope "sequence" needs seqLen, a positive integer (tokens per sequence), got ${
        JSON.stringify(seqLen)
      }`,
    );
  }
  return {
    kind: "auxLoss",
    config: { alpha, scope, seqLen, score, convention },
    finish(ctx) {
      const { T, N, topK: k, routing } = ctx;
      const probs = score === "softmax"
        ? findMarked([routing.scores, routing.weights], "moe.logits").softmax(-1)
        : findMarked([routing.scores], "moe.scores");
      const S = scope === "sequence" ? seqLen! : T;
      if (T % S !== 0) fail(op, `T = ${T} tokens is not a whole number of sequences of ${S}`);
      const B = T / S;
      const hot = oneHot(stopGradient(routing.indices).reshape([B, S * k]), N); // [B, S·k, N]
      const f = hot.sum(1).div(convention === "hf" ? S : S * k); // [B, N], no gradient
      const P = probs.reshape([B, S, N]).mean(1); // [B, N]
      return { losses: { load_balancing_loss: f.mul(P).sum(1).mean().mul(alpha * N) } };
    },
  };
}

/** `{ kind: "auxLoss" }`; `aux`, `aux-seq`, `aux-hf` on the command line. */
export const auxLossKind: BalancerKind<AuxLossOptions> = {
  kind: "auxLoss",
  description: "auxiliary load-balancing loss α·N·Σ f_i·P_i (Switch Transformer)",
  create: auxLoss,
  cli: {
    name: "aux",
    main: "alpha",
    presets: { "aux-seq": { scope: "sequence" }, "aux-hf": { convention: "hf" } },
  },
  // Per-sequence scope defaults to the length of the sequences the model is run on.
  forRun: (o, run) => (o.scope === "sequence" ? { ...o, seqLen: o.seqLen ?? run.seqLen } : o),
  // HF's loss is K× the unified one: a unified α is written as α/K; an "hf" α as is.
  hfRouterAuxLossCoef: (o, topK) => {
    const alpha = o.alpha ?? 0.01;
    return (o.convention ?? "unified") === "hf" ? alpha : alpha / topK;
  },
  megatron(o, { topK }) {
    const alpha = o.alpha ?? 0.01;
    // Megatron's aux loss is E·Σ f_i·P_i with f_i = c_i/(T·k): moejit's "unified" convention.
    const hf = (o.convention ?? "unified") === "hf";
    return {
      flags: [
        ["moe-router-load-balancing-type", o.scope === "sequence" ? "seq_aux_loss" : "aux_loss"],
        [
          "moe-aux-loss-coeff",
          String(hf ? alpha * topK : alpha),
          hf
            ? `Hugging Face's coefficient ${alpha} × top-k: Megatron's loss equals its coefficient at perfect balance`
            : undefined,
        ],
      ],
    };
  },
};
