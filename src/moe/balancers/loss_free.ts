/**
 * Loss-free balancing (Wang et al. 2024, DeepSeek; docs/methods.md §4.3): a per-expert bias added to the scores for
 * selection only, nudged after every step toward the experts that received too few tokens.
 */
import { fail } from "../../errors.ts";
import { Tensor } from "../../tensor.ts";
import { stopGradient } from "../../ops/meta.ts";
import { constant, describe } from "../../ops/prim.ts";
import { checkOptions, nonNegative } from "../options.ts";
import type { LayerState } from "../state.ts";
import type { Balancer, BalancerKind } from "../balancer.ts";

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
 * Loss-free balancing: a per-expert bias b, added to the scores for selection only, updated
 * after each step from that step's loads: b ← b + u·sign(c̄ − c). The update is causal (it takes
 * effect from the next step) and is carried in `state.lossFreeBias`.
 *
 * @example
 * ```ts
 * const r = mj.moe.layer(x, params, { topK: 2, balance: [mj.balance.lossFree({ rate: 1e-3 })], state });
 * state = r.state; // { lossFreeBias }: pass it to the next step
 * ```
 */
export function lossFree(opts: LossFreeOptions = {}): Balancer {
  const op = "balance.lossFree";
  const o = checkOptions(op, opts, ["rate", "rule", "violation"]);
  const rate = nonNegative(op, "rate", o.rate, 1e-3);
  const rule = (o.rule ?? "sign") as string;
  if (rule !== "sign" && rule !== "linear") {
    fail(op, `rule must be "sign" or "linear", got ${JSON.stringify(rule)}`);
  }
  const violation = (o.violation ?? "relative") as string;
  if (violation !== "relative" && violation !== "raw") {
    fail(op, `violation must be "relative" or "raw", got ${JSON.stringify(violation)}`);
  }
  const biasOf = (ctx: { N: number; state: LayerState }) => {
    const b = ctx.state.lossFreeBias;
    if (!(b instanceof Tensor) || b.shape.join() !== String(ctx.N)) {
      fail(
        op,
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
    state: { lossFreeBias: ({ N }) => constant(0, [N], "f32") },
    selectionShift: (_scores, ctx) => ({ shift: stopGradient(biasOf(ctx)) }),
    finish(ctx) {
      const mean = (ctx.T * ctx.topK) / ctx.N;
      const e = constant(mean, [ctx.N], "f32").sub(ctx.routing.counts.cast("f32"));
      const step = rule === "sign" ? e.sign() : violation === "relative" ? e.div(mean) : e;
      return { state: { lossFreeBias: stopGradient(biasOf(ctx).add(step.mul(rate))) } };
    },
  };
}

/** `{ kind: "lossFree" }`; `lossfree` on the command line. */
export const lossFreeKind: BalancerKind<LossFreeOptions> = {
  kind: "lossFree",
  description: "loss-free balancing: a selection bias b ← b + u·sign(c̄ − c) (Wang et al. 2024)",
  create: lossFree,
  cli: { name: "lossfree", main: "rate" },
  megatron(o) {
    const rate = o.rate ?? 1e-3;
    if ((o.rule ?? "sign") === "sign") {
      return {
        missing: [[
          "an expert bias on a softmax router",
          `This model's loss-free balancing is Megatron's expert-bias rule (b ← b + ${rate}·sign(mean load − load), for selection only), but Megatron-Core allows it with sigmoid scores only; the nearest is --moe-router-score-function sigmoid --moe-router-enable-expert-bias --moe-router-bias-update-rate ${rate}, a different router`,
        ]],
      };
    }
    return {
      missing: [[
        `loss-free balancing with rule "${o.rule}"`,
        "Megatron-Core's expert bias moves by rate·sign(·) only",
      ]],
    };
  },
};
